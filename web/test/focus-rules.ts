// The checks crates/focus/src/jingle.rs `parse`, `check_sources` and
// `validate_owner` apply to what a client sends, transcribed, so that the
// tests here fail when the client writes something the focus would refuse.
import type { Element } from '@xmpp/client';

const NS_JINGLE = 'urn:xmpp:jingle:1';
const NS_RTP = 'urn:xmpp:jingle:apps:rtp:1';
const NS_SSMA = 'urn:xmpp:jingle:apps:rtp:ssma:0';
const NS_ICE_UDP = 'urn:xmpp:jingle:transports:ice-udp:1';
const NS_DTLS = 'urn:xmpp:jingle:apps:dtls:0';

export interface FocusView {
  action: string;
  sid: string;
  transport?: {
    ufrag: string;
    pwd: string;
    fingerprints: { hash: string; value: string; setup: string }[];
    candidates: { ip: string; port: number; protocol: string; typ: string; priority: number }[];
  };
  sources: { ssrc: number; kind: string; name?: string; msid?: string; videoType?: string }[];
  groups: { kind: string; semantics: string; ssrcs: number[] }[];
}

const ACTIONS = new Set([
  'session-accept', 'session-info', 'session-terminate', 'transport-info', 'transport-accept',
  'transport-reject', 'source-add', 'addsource', 'source-remove', 'removesource', 'content-accept',
  'content-add', 'content-modify', 'content-reject', 'content-remove', 'description-info',
  'security-info', 'session-initiate', 'transport-replace',
]);

function num(el: Element, attr: string, max: number): number {
  const v = el.attrs[attr];
  if (v === undefined || !/^\d+$/.test(v) || Number(v) > max) throw new Error(`<${el.getName()}> ${attr} invalid: ${String(v)}`);
  return Number(v);
}

function req(el: Element, attr: string): string {
  const v = el.attrs[attr];
  if (v === undefined) throw new Error(`<${el.getName()}> without ${attr}`);
  return v;
}

function isIp(s: string): boolean {
  if (/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(s)) return s.split('.').every((p) => Number(p) <= 255);
  return /^[0-9a-fA-F:.]+$/.test(s) && s.includes(':');
}

export function focusParse(el: Element, endpoint: string, maxSources = 20): FocusView {
  if (!el.is('jingle', NS_JINGLE)) throw new Error('not jingle');
  const action = req(el, 'action');
  if (!ACTIONS.has(action)) throw new Error(`unknown action ${action}`);
  const sid = req(el, 'sid');
  if (sid === '') throw new Error('empty sid');
  const view: FocusView = { action, sid, sources: [], groups: [] };
  for (const content of el.getChildren('content', NS_JINGLE)) {
    const d = content.getChild('description', NS_RTP);
    if (d) {
      const kind = d.attrs.media ?? content.attrs.name;
      if (kind === 'audio' || kind === 'video') {
        for (const c of d.getChildElements()) {
          if (c.is('source', NS_SSMA)) {
            const msid = c.getChildren('parameter', NS_SSMA).find((p) => p.attrs.name === 'msid')?.attrs.value;
            const s: FocusView['sources'][number] = { ssrc: num(c, 'ssrc', 0xffffffff), kind };
            if (c.attrs.name !== undefined) s.name = c.attrs.name;
            if (msid !== undefined) s.msid = msid;
            if (c.attrs.videoType !== undefined) s.videoType = c.attrs.videoType;
            view.sources.push(s);
          } else if (c.is('ssrc-group', NS_SSMA)) {
            const ssrcs = c.getChildren('source', NS_SSMA).map((s) => num(s, 'ssrc', 0xffffffff));
            if (ssrcs.length === 0) throw new Error('empty ssrc-group');
            view.groups.push({ kind, semantics: req(c, 'semantics'), ssrcs });
          }
        }
      } else if (d.getChildren('source', NS_SSMA).length > 0) {
        throw new Error('sources in a description that is neither audio nor video');
      }
    }
    const t = content.getChild('transport', NS_ICE_UDP);
    if (t) {
      const tr = (view.transport ??= { ufrag: '', pwd: '', fingerprints: [], candidates: [] });
      if (tr.ufrag === '' && t.attrs.ufrag !== undefined) tr.ufrag = t.attrs.ufrag;
      if (tr.pwd === '' && t.attrs.pwd !== undefined) tr.pwd = t.attrs.pwd;
      for (const c of t.getChildElements()) {
        if (c.is('fingerprint', NS_DTLS)) {
          const fp = { hash: req(c, 'hash'), value: c.getText().trim(), setup: c.attrs.setup ?? 'actpass' };
          if (fp.value === '') throw new Error('empty fingerprint');
          if (!tr.fingerprints.some((x) => x.value === fp.value && x.setup === fp.setup)) tr.fingerprints.push(fp);
        } else if (c.is('candidate', NS_ICE_UDP)) {
          const ip = req(c, 'ip');
          if (ip.length > 6 && ip.toLowerCase().endsWith('.local')) continue;
          if (!isIp(ip)) throw new Error(`candidate ip ${ip}`);
          req(c, 'foundation');
          num(c, 'component', 255);
          if (c.attrs.generation !== undefined) num(c, 'generation', 0xffffffff);
          const cand = {
            ip,
            port: num(c, 'port', 65535),
            protocol: req(c, 'protocol').toLowerCase(),
            typ: req(c, 'type'),
            priority: num(c, 'priority', 0xffffffff),
          };
          if (!tr.candidates.some((x) => x.ip === cand.ip && x.port === cand.port)) tr.candidates.push(cand);
        }
      }
    }
  }
  // check_sources
  if (view.sources.length > maxSources) throw new Error('too many sources');
  const seen = new Set<number>();
  for (const s of view.sources) {
    if (seen.has(s.ssrc)) throw new Error(`ssrc ${String(s.ssrc)} listed twice`);
    seen.add(s.ssrc);
  }
  for (const g of view.groups) {
    if (!g.ssrcs.every((s) => seen.has(s))) throw new Error(`${g.semantics} group over an unlisted ssrc`);
  }
  // validate_owner
  for (const s of view.sources) {
    if (s.name !== undefined && !(s.name.startsWith(`${endpoint}-`) && s.name.length > endpoint.length + 1)) {
      throw new Error(`source name ${s.name} is not ${endpoint}'s`);
    }
  }
  return view;
}
