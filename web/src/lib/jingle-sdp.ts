// Jingle (as the focus speaks it, crates/focus/src/jingle.rs) to and from
// SDP (as a Unified Plan browser speaks it).
//
// The focus offers two contents, `audio` and `video`, sharing one bundled
// ICE-UDP transport, and lists in them the sources (XEP-0339) of the OTHER
// participants. A Unified Plan browser wants one m-section per received
// track, so the offer is rewritten:
//
//   m-section 0  audio, mid `audio`: what this browser sends (offer recvonly)
//   m-section 1  video, mid `video`: what this browser sends (offer recvonly)
//   m-section n  one per remote source (one owner's one audio or video
//                track), mid `audio-<k>` / `video-<k>`, offer sendonly,
//                carrying that source's a=ssrc / a=ssrc-group lines and
//                msid, so that the browser demultiplexes by SSRC (the bridge
//                does not put the MID header extension on what it forwards)
//
// all in one BUNDLE group. A source's m-section keeps its mid for as long as
// the session lasts; a removed source leaves its m-section `inactive`
// (port 9, no SSRCs) and the next source of the same kind reuses it, so
// m-lines never move and never multiply beyond the peak.
//
// The answer goes back as session-accept with contents `audio` and `video`
// built from m-sections 0 and 1 only (the local sources, named
// `<endpoint>-a0` / `<endpoint>-v0`), and the transport of the bundle.
//
// Everything here is pure: strings and elements in, strings and elements
// out, so that it is tested without a browser.

import { xml, type Element } from '@xmpp/client';
import { parse as parseSdp, write as writeSdp } from 'sdp-transform';
import type { MediaDescription, SessionDescription } from 'sdp-transform';
import {
  NS_COLIBRI,
  NS_DTLS,
  NS_FOCUS,
  NS_GROUPING,
  NS_HDREXT,
  NS_ICE_UDP,
  NS_JINGLE,
  NS_JITMEET,
  NS_RTCP_FB,
  NS_RTP,
  NS_SSMA,
} from './ns';

export type MediaKind = 'audio' | 'video';
export const KINDS: readonly MediaKind[] = ['audio', 'video'];

export interface PayloadType {
  id: number;
  name: string;
  clockrate: number;
  channels?: number;
  parameters: { name: string; value: string }[];
  feedback: { type: string; subtype?: string }[];
}

export interface HeaderExtension {
  id: number;
  uri: string;
}

export interface MediaCodecs {
  payloadTypes: PayloadType[];
  headerExtensions: HeaderExtension[];
  /** Two-byte header extensions allowed (`<extmap-allow-mixed/>`): what lets a browser send AV1's dependency descriptor. */
  extmapAllowMixed?: boolean;
}

export interface Fingerprint {
  hash: string;
  setup: string;
  value: string;
}

export interface Candidate {
  foundation: string;
  component: number;
  protocol: string;
  priority: number;
  ip: string;
  port: number;
  type: string;
  generation: number;
  relAddr?: string;
  relPort?: number;
  tcpType?: string;
}

export interface Transport {
  ufrag?: string;
  pwd?: string;
  fingerprints: Fingerprint[];
  candidates: Candidate[];
  /** The bridge channel's URL (`<web-socket xmlns=colibri url>`). */
  websocketUrl?: string;
  /** LJM's in-place ICE restart marker on transport-info. */
  iceGeneration?: number;
}

export interface SsrcInfo {
  ssrc: number;
  name?: string;
  msid?: string;
  videoType?: string;
  /** `<ssrc-info owner>` as sent: an occupant JID or a bare endpoint id. */
  owner?: string;
}

export interface SsrcGroup {
  semantics: string;
  ssrcs: number[];
}

export interface JingleContent {
  name: string;
  kind?: MediaKind;
  senders?: string;
  /** Present when the description listed payload types. */
  codecs?: MediaCodecs;
  sources: SsrcInfo[];
  groups: SsrcGroup[];
  transport?: Transport;
}

export interface JingleMessage {
  action: string;
  sid: string;
  initiator?: string;
  contents: JingleContent[];
  bundle?: string[];
  bridgeSessionId?: string;
  /** session-terminate's reason condition, e.g. `success`. */
  reason?: string;
}

export class JingleError extends Error {
  override name = 'JingleError';
}

// ---------------------------------------------------------------- parsing

function uint(value: string | undefined, what: string, max = 0xffffffff): number {
  if (value === undefined || !/^\d{1,10}$/.test(value)) {
    throw new JingleError(`${what} is not a number: ${String(value)}`);
  }
  const n = Number(value);
  if (n > max) throw new JingleError(`${what} out of range: ${value}`);
  return n;
}

function required(el: Element, attr: string): string {
  const v = el.attrs[attr];
  if (v === undefined || v === '') throw new JingleError(`<${el.getName()}> without ${attr}`);
  return v;
}

function kindOf(s: string | undefined): MediaKind | undefined {
  return s === 'audio' || s === 'video' ? s : undefined;
}

function parsePayloadType(p: Element): PayloadType {
  const pt: PayloadType = {
    id: uint(p.attrs.id, 'payload-type id', 127),
    name: p.attrs.name ?? '',
    clockrate: p.attrs.clockrate === undefined ? 0 : uint(p.attrs.clockrate, 'clockrate'),
    parameters: [],
    feedback: [],
  };
  if (p.attrs.channels !== undefined) pt.channels = uint(p.attrs.channels, 'channels', 255);
  for (const c of p.getChildElements()) {
    if (c.getName() === 'parameter' && c.attrs.name !== undefined) {
      pt.parameters.push({ name: c.attrs.name, value: c.attrs.value ?? '' });
    } else if (c.is('rtcp-fb', NS_RTCP_FB) && c.attrs.type !== undefined) {
      const fb: { type: string; subtype?: string } = { type: c.attrs.type };
      if (c.attrs.subtype !== undefined && c.attrs.subtype !== '') fb.subtype = c.attrs.subtype;
      pt.feedback.push(fb);
    }
  }
  return pt;
}

function parseCandidate(c: Element): Candidate {
  const cand: Candidate = {
    foundation: required(c, 'foundation'),
    component: uint(c.attrs.component, 'component', 255),
    protocol: required(c, 'protocol').toLowerCase(),
    priority: uint(c.attrs.priority, 'priority'),
    ip: required(c, 'ip'),
    port: uint(c.attrs.port, 'port', 65535),
    type: required(c, 'type'),
    generation: c.attrs.generation === undefined ? 0 : uint(c.attrs.generation, 'generation'),
  };
  if (c.attrs['rel-addr'] !== undefined) cand.relAddr = c.attrs['rel-addr'];
  if (c.attrs['rel-port'] !== undefined) cand.relPort = uint(c.attrs['rel-port'], 'rel-port', 65535);
  if (c.attrs.tcptype !== undefined) cand.tcpType = c.attrs.tcptype;
  return cand;
}

export function parseTransport(t: Element): Transport {
  const tr: Transport = { fingerprints: [], candidates: [] };
  if (t.attrs.ufrag !== undefined) tr.ufrag = t.attrs.ufrag;
  if (t.attrs.pwd !== undefined) tr.pwd = t.attrs.pwd;
  if (t.attrs['ice-generation'] !== undefined) {
    tr.iceGeneration = uint(t.attrs['ice-generation'], 'ice-generation');
  }
  for (const c of t.getChildElements()) {
    if (c.is('fingerprint', NS_DTLS)) {
      const value = c.getText().trim();
      if (value === '') throw new JingleError('empty fingerprint');
      tr.fingerprints.push({ hash: required(c, 'hash'), setup: c.attrs.setup ?? 'actpass', value });
    } else if (c.is('candidate', NS_ICE_UDP)) {
      tr.candidates.push(parseCandidate(c));
    } else if (c.is('web-socket', NS_COLIBRI) && c.attrs.url !== undefined) {
      tr.websocketUrl = c.attrs.url;
    }
  }
  return tr;
}

function parseDescription(d: Element, content: JingleContent): void {
  const payloadTypes: PayloadType[] = [];
  const headerExtensions: HeaderExtension[] = [];
  let extmapAllowMixed = false;
  for (const c of d.getChildElements()) {
    if (c.is('extmap-allow-mixed', NS_HDREXT)) {
      extmapAllowMixed = true;
    } else if (c.is('payload-type', NS_RTP)) {
      payloadTypes.push(parsePayloadType(c));
    } else if (c.is('rtp-hdrext', NS_HDREXT)) {
      headerExtensions.push({ id: uint(c.attrs.id, 'rtp-hdrext id', 255), uri: required(c, 'uri') });
    } else if (c.is('source', NS_SSMA)) {
      const s: SsrcInfo = { ssrc: uint(c.attrs.ssrc, 'ssrc') };
      if (c.attrs.name !== undefined) s.name = c.attrs.name;
      if (c.attrs.videoType !== undefined) s.videoType = c.attrs.videoType;
      for (const p of c.getChildElements()) {
        if (p.getName() === 'parameter' && p.attrs.name === 'msid' && p.attrs.value !== undefined) {
          s.msid = p.attrs.value;
        } else if (p.is('ssrc-info', NS_JITMEET) && p.attrs.owner !== undefined) {
          s.owner = p.attrs.owner;
        }
      }
      content.sources.push(s);
    } else if (c.is('ssrc-group', NS_SSMA)) {
      const ssrcs = c.getChildren('source').map((s) => uint(s.attrs.ssrc, 'ssrc-group ssrc'));
      if (ssrcs.length === 0) throw new JingleError('empty ssrc-group');
      content.groups.push({ semantics: required(c, 'semantics'), ssrcs });
    }
  }
  if (payloadTypes.length > 0 || headerExtensions.length > 0) {
    content.codecs = { payloadTypes, headerExtensions };
    if (extmapAllowMixed) content.codecs.extmapAllowMixed = true;
  }
}

/** Reads a `<jingle/>` element into plain data; throws JingleError. */
export function parseJingle(el: Element): JingleMessage {
  if (!el.is('jingle', NS_JINGLE)) throw new JingleError('not a jingle element');
  const msg: JingleMessage = {
    action: required(el, 'action'),
    sid: required(el, 'sid'),
    contents: [],
  };
  if (el.attrs.initiator !== undefined) msg.initiator = el.attrs.initiator;
  for (const c of el.getChildElements()) {
    if (c.is('content', NS_JINGLE)) {
      const content: JingleContent = { name: c.attrs.name ?? '', sources: [], groups: [] };
      if (c.attrs.senders !== undefined) content.senders = c.attrs.senders;
      const d = c.getChild('description', NS_RTP);
      const kind = kindOf(d?.attrs.media) ?? kindOf(content.name);
      if (kind) content.kind = kind;
      if (d) parseDescription(d, content);
      const t = c.getChild('transport', NS_ICE_UDP);
      if (t) content.transport = parseTransport(t);
      msg.contents.push(content);
    } else if (c.is('group', NS_GROUPING) && c.attrs.semantics === 'BUNDLE') {
      msg.bundle = c.getChildren('content').map((x) => x.attrs.name ?? '');
    } else if (c.is('bridge-session', NS_FOCUS) && c.attrs.id !== undefined) {
      msg.bridgeSessionId = c.attrs.id;
    } else if (c.getName() === 'reason') {
      const cond = c.getChildElements().find((x) => x.getName() !== 'text');
      if (cond) msg.reason = cond.getName();
    }
  }
  return msg;
}

/** The one transport of a bundled session: the first content's. */
export function bundleTransport(msg: JingleMessage): Transport | undefined {
  return msg.contents.find((c) => c.transport)?.transport;
}

// ------------------------------------------------------- remote sources

/** One track the browser receives: one owner's one audio or video source. */
export interface RemoteSource {
  kind: MediaKind;
  /** The sender's endpoint id (its MUC nick). */
  owner: string;
  /** Jitsi's source name, `<owner>-a0`, `-v0`, ...; synthesised if absent. */
  name: string;
  videoType?: string;
  streamId: string;
  trackId: string;
  /** Primary SSRC first, then RTX/other members. */
  ssrcs: number[];
  groups: SsrcGroup[];
}

/** `room@muc/ep` or `ep` → `ep`. */
export function endpointOf(owner: string): string {
  const slash = owner.indexOf('/');
  return slash >= 0 ? owner.slice(slash + 1) : owner;
}

const MSID_TOKEN = /[^A-Za-z0-9_-]/g;
function msidToken(s: string): string {
  const t = s.replace(MSID_TOKEN, '-').slice(0, 64);
  return t === '' ? '-' : t;
}

/**
 * Splits one content's SSRCs into sources: SSRCs tied by a group (FID, SIM,
 * FEC-FR) or by a shared source name are one source.
 */
export function groupSources(kind: MediaKind, ssrcs: SsrcInfo[], groups: SsrcGroup[]): RemoteSource[] {
  const index = new Map<number, number>();
  ssrcs.forEach((s, i) => index.set(s.ssrc, i));
  const parent = ssrcs.map((_, i) => i);
  const find = (i: number): number => {
    let r = i;
    while (parent[r] !== r) r = parent[r] ?? r;
    parent[i] = r;
    return r;
  };
  const union = (a: number, b: number) => {
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent[Math.max(ra, rb)] = Math.min(ra, rb);
  };
  for (const g of groups) {
    const members = g.ssrcs.map((s) => index.get(s)).filter((i): i is number => i !== undefined);
    const [first, ...rest] = members;
    if (first !== undefined) for (const m of rest) union(first, m);
  }
  const byName = new Map<string, number>();
  ssrcs.forEach((s, i) => {
    if (s.name === undefined) return;
    const seen = byName.get(s.name);
    if (seen === undefined) byName.set(s.name, i);
    else union(seen, i);
  });

  const components = new Map<number, SsrcInfo[]>();
  ssrcs.forEach((s, i) => {
    const root = find(i);
    const list = components.get(root);
    if (list) list.push(s);
    else components.set(root, [s]);
  });

  const secondary = new Set<number>();
  for (const g of groups) {
    if (g.semantics === 'FID' || g.semantics === 'FEC-FR') g.ssrcs.slice(1).forEach((s) => secondary.add(s));
  }

  const out: RemoteSource[] = [];
  for (const members of components.values()) {
    const ordered = [
      ...members.filter((m) => !secondary.has(m.ssrc)),
      ...members.filter((m) => secondary.has(m.ssrc)),
    ];
    const first = ordered[0];
    if (!first) continue;
    const named = members.find((m) => m.name !== undefined)?.name;
    const ownerAttr = members.find((m) => m.owner !== undefined)?.owner;
    const owner = ownerAttr !== undefined
      ? endpointOf(ownerAttr)
      : named !== undefined
        ? named.replace(/-[a-z]+\d*$/, '')
        : 'unknown';
    const name = named ?? `${owner}-${kind === 'audio' ? 'a' : 'v'}${String(first.ssrc)}`;
    const msid = members.find((m) => m.msid !== undefined)?.msid?.trim().split(/\s+/) ?? [];
    const set = new Set(members.map((m) => m.ssrc));
    const src: RemoteSource = {
      kind,
      owner,
      name,
      streamId: msidToken(msid[0] ?? owner),
      trackId: msidToken(msid[1] ?? name),
      ssrcs: ordered.map((m) => m.ssrc),
      groups: groups.filter((g) => g.ssrcs.every((s) => set.has(s))),
    };
    const vt = members.find((m) => m.videoType !== undefined)?.videoType;
    if (vt !== undefined) src.videoType = vt;
    out.push(src);
  }
  return out;
}

/** All sources a message's contents list, per kind. */
export function sourcesOf(contents: JingleContent[]): RemoteSource[] {
  const out: RemoteSource[] = [];
  for (const c of contents) {
    if (c.kind) out.push(...groupSources(c.kind, c.sources, c.groups));
  }
  return out;
}

// ------------------------------------------------------ the remote offer

export interface Slot {
  mid: string;
  kind: MediaKind;
  source: RemoteSource | null;
}

export interface SourceChange {
  added: { source: RemoteSource; mid: string }[];
  removed: { source: RemoteSource; mid: string }[];
}

export const LOCAL_MID: Record<MediaKind, string> = { audio: 'audio', video: 'video' };

/**
 * The session as the focus described it (codecs, transport, remote
 * sources) and the m-section layout given to them, from which every
 * (re)offer handed to the browser is written.
 */
export class RemoteDescription {
  readonly sid: string;
  readonly initiator: string | undefined;
  readonly bridgeSessionId: string | undefined;
  readonly codecs: Record<MediaKind, MediaCodecs>;
  transport: Transport;
  /** Remote m-sections after the two local ones, in m-line order. */
  readonly slots: Slot[] = [];
  private readonly sessionId: string;
  private version = 0;

  private constructor(msg: JingleMessage) {
    this.sid = msg.sid;
    this.initiator = msg.initiator;
    this.bridgeSessionId = msg.bridgeSessionId;
    const empty = (): MediaCodecs => ({ payloadTypes: [], headerExtensions: [] });
    this.codecs = {
      audio: msg.contents.find((c) => c.kind === 'audio')?.codecs ?? empty(),
      video: msg.contents.find((c) => c.kind === 'video')?.codecs ?? empty(),
    };
    const t = bundleTransport(msg);
    if (!t?.ufrag || !t.pwd || t.fingerprints.length === 0) {
      throw new JingleError('session-initiate without ICE credentials and a DTLS fingerprint');
    }
    this.transport = t;
    // Any stable number will do; derive it from the sid for reproducibility.
    let h = 0;
    for (const ch of msg.sid) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    this.sessionId = String(1000000 + h);
  }

  static fromSessionInitiate(msg: JingleMessage): { description: RemoteDescription; change: SourceChange } {
    if (msg.action !== 'session-initiate') throw new JingleError(`not a session-initiate: ${msg.action}`);
    for (const k of KINDS) {
      if (!msg.contents.some((c) => c.kind === k)) throw new JingleError(`session-initiate without ${k}`);
    }
    const description = new RemoteDescription(msg);
    const change = description.addSources(msg.contents);
    return { description, change };
  }

  /** The remote sources with their mids, in m-line order. */
  get sources(): { source: RemoteSource; mid: string }[] {
    return this.slots.flatMap((s) => (s.source ? [{ source: s.source, mid: s.mid }] : []));
  }

  /** source-add: new sources take a free m-section of their kind or a new one. */
  addSources(contents: JingleContent[]): SourceChange {
    const change: SourceChange = { added: [], removed: [] };
    for (const src of sourcesOf(contents)) {
      const ssrcs = new Set(src.ssrcs);
      const same = this.slots.find(
        (s) =>
          s.source?.kind === src.kind &&
          s.source.name === src.name &&
          s.source.ssrcs.length === src.ssrcs.length &&
          s.source.ssrcs.every((x) => ssrcs.has(x)),
      );
      if (same) continue; // announced again, unchanged
      // A source re-announced (same name, or any of its SSRCs) replaces the old one.
      for (const slot of this.slots) {
        const old = slot.source;
        if (old && old.kind === src.kind && (old.name === src.name || old.ssrcs.some((s) => ssrcs.has(s)))) {
          change.removed.push({ source: old, mid: slot.mid });
          slot.source = null;
        }
      }
      let slot = this.slots.find((s) => s.kind === src.kind && s.source === null);
      if (!slot) {
        const n = this.slots.filter((s) => s.kind === src.kind).length + 1;
        slot = { mid: `${src.kind}-${String(n)}`, kind: src.kind, source: null };
        this.slots.push(slot);
      }
      slot.source = src;
      change.added.push({ source: src, mid: slot.mid });
    }
    return change;
  }

  /** source-remove: every source with an SSRC listed goes, its m-section freed. */
  removeSources(contents: JingleContent[]): SourceChange {
    const change: SourceChange = { added: [], removed: [] };
    const gone = new Set<number>();
    for (const c of contents) for (const s of c.sources) gone.add(s.ssrc);
    for (const slot of this.slots) {
      const src = slot.source;
      if (src && src.ssrcs.some((s) => gone.has(s))) {
        change.removed.push({ source: src, mid: slot.mid });
        slot.source = null;
      }
    }
    return change;
  }

  /**
   * transport-info: new credentials (an ICE restart) replace the transport;
   * the same credentials only add candidates. Returns whether ICE restarts.
   */
  updateTransport(t: Transport): boolean {
    const restart = t.ufrag !== undefined && t.ufrag !== this.transport.ufrag;
    if (restart) {
      this.transport = {
        ...this.transport,
        ...t,
        fingerprints: t.fingerprints.length > 0 ? t.fingerprints : this.transport.fingerprints,
        websocketUrl: t.websocketUrl ?? this.transport.websocketUrl,
      };
    } else {
      const key = (c: Candidate) => `${c.ip}|${String(c.port)}|${c.protocol}|${String(c.component)}`;
      const have = new Set(this.transport.candidates.map(key));
      for (const c of t.candidates) if (!have.has(key(c))) this.transport.candidates.push(c);
      if (t.websocketUrl !== undefined) this.transport.websocketUrl = t.websocketUrl;
    }
    return restart;
  }

  /** The SDP offer for the browser, a new session version each call. */
  toSdp(): string {
    this.version += 1;
    const media: MediaDescription[] = [
      this.section('audio', LOCAL_MID.audio, 'recvonly', null, true),
      this.section('video', LOCAL_MID.video, 'recvonly', null, false),
      ...this.slots.map((s) => this.section(s.kind, s.mid, s.source ? 'sendonly' : 'inactive', s.source, false)),
    ];
    const session: SessionDescription = {
      version: 0,
      origin: {
        username: '-',
        sessionId: this.sessionId,
        sessionVersion: this.version,
        netType: 'IN',
        ipVer: 4,
        address: '0.0.0.0',
      },
      name: '-',
      timing: { start: 0, stop: 0 },
      groups: [{ type: 'BUNDLE', mids: media.map((m) => m.mid ?? '').join(' ') }],
      msidSemantic: { semantic: 'WMS', token: '*' },
      media,
    };
    return writeSdp(session);
  }

  private section(
    kind: MediaKind,
    mid: string,
    direction: 'recvonly' | 'sendonly' | 'inactive',
    source: RemoteSource | null,
    withCandidates: boolean,
  ): MediaDescription {
    const codecs = this.codecs[kind];
    const t = this.transport;
    const fp = t.fingerprints[0];
    const m: MediaDescription = {
      type: kind,
      port: 9,
      protocol: 'UDP/TLS/RTP/SAVPF',
      payloads: codecs.payloadTypes.map((p) => p.id).join(' '),
      connection: { version: 4, ip: '0.0.0.0' },
      rtp: [],
      fmtp: [],
      rtcpFb: [],
      mid,
      direction,
      rtcpMux: 'rtcp-mux',
    };
    if (t.ufrag !== undefined) m.iceUfrag = t.ufrag;
    if (t.pwd !== undefined) m.icePwd = t.pwd;
    if (fp) {
      m.fingerprint = { type: fp.hash, hash: fp.value };
      m.setup = fp.setup;
    }
    if (codecs.headerExtensions.length > 0) {
      m.ext = codecs.headerExtensions.map((h) => ({ value: h.id, uri: h.uri }));
    }
    if (codecs.extmapAllowMixed) m.extmapAllowMixed = 'extmap-allow-mixed';
    for (const p of codecs.payloadTypes) {
      const rtp: MediaDescription['rtp'][number] = { payload: p.id, codec: p.name, rate: p.clockrate };
      if (p.channels !== undefined && p.channels > 1) rtp.encoding = p.channels;
      m.rtp.push(rtp);
      if (p.parameters.length > 0) {
        m.fmtp.push({ payload: p.id, config: p.parameters.map((x) => `${x.name}=${x.value}`).join(';') });
      }
      for (const fb of p.feedback) {
        const line: { payload: number; type: string; subtype?: string } = { payload: p.id, type: fb.type };
        if (fb.subtype !== undefined) line.subtype = fb.subtype;
        m.rtcpFb?.push(line);
      }
    }
    if (withCandidates && t.candidates.length > 0) {
      m.candidates = t.candidates.map((c) => {
        const line: NonNullable<MediaDescription['candidates']>[number] = {
          foundation: c.foundation,
          component: c.component,
          transport: c.protocol,
          priority: c.priority,
          ip: c.ip,
          port: c.port,
          type: c.type,
          generation: c.generation,
        };
        if (c.relAddr !== undefined) line.raddr = c.relAddr;
        if (c.relPort !== undefined) line.rport = c.relPort;
        if (c.tcpType !== undefined) line.tcptype = c.tcpType;
        return line;
      });
    }
    if (source) {
      m.msid = [{ id: source.streamId, appdata: source.trackId }];
      m.ssrcs = source.ssrcs.flatMap((id) => [
        { id, attribute: 'cname', value: source.owner },
        { id, attribute: 'msid', value: `${source.streamId} ${source.trackId}` },
      ]);
      if (source.groups.length > 0) {
        m.ssrcGroups = source.groups.map((g) => ({ semantics: g.semantics, ssrcs: g.ssrcs.join(' ') }));
      }
    }
    return m;
  }
}

// ------------------------------------------------------- the local answer

export interface LocalContent {
  name: string;
  kind: MediaKind;
  direction: string;
  codecs: MediaCodecs;
  sources: SsrcInfo[];
  groups: SsrcGroup[];
}

export interface LocalMedia {
  contents: LocalContent[];
  transport: Transport;
}

function sourceName(endpoint: string, kind: MediaKind): string {
  return `${endpoint}-${kind === 'audio' ? 'a' : 'v'}0`;
}

function codecsOf(m: MediaDescription): MediaCodecs {
  const payloadTypes: PayloadType[] = m.rtp.map((r) => {
    const p: PayloadType = { id: r.payload, name: r.codec, clockrate: r.rate ?? 0, parameters: [], feedback: [] };
    if (r.encoding !== undefined) p.channels = r.encoding;
    const fmtp = m.fmtp.find((f) => f.payload === r.payload);
    if (fmtp) {
      for (const kv of fmtp.config.split(';')) {
        const [name, ...rest] = kv.trim().split('=');
        if (name) p.parameters.push({ name, value: rest.join('=') });
      }
    }
    for (const fb of m.rtcpFb ?? []) {
      if (String(fb.payload) === String(r.payload) || fb.payload === '*') {
        const f: { type: string; subtype?: string } = { type: fb.type };
        if (fb.subtype !== undefined) f.subtype = fb.subtype;
        p.feedback.push(f);
      }
    }
    return p;
  });
  return { payloadTypes, headerExtensions: (m.ext ?? []).map((e) => ({ id: e.value, uri: e.uri })) };
}

/**
 * Reads the browser's answer: m-sections 0 and 1 (mids `audio`, `video`)
 * give the local sources, named `<endpoint>-a0` / `-v0`; the bundle's
 * transport comes from the first m-section that has one. TCP candidates are
 * left out: the bridge only does UDP.
 */
export function parseLocalAnswer(sdp: string, endpoint: string, videoType = 'camera'): LocalMedia {
  const session = parseSdp(sdp);
  const contents: LocalContent[] = [];
  for (const kind of KINDS) {
    const m = session.media.find((x) => x.mid === LOCAL_MID[kind]);
    if (!m) continue;
    const direction = m.direction ?? session.direction ?? 'sendrecv';
    const sending = m.port !== 0 && (direction === 'sendrecv' || direction === 'sendonly');
    const ids: number[] = [];
    const msidBySsrc = new Map<number, string>();
    for (const a of m.ssrcs ?? []) {
      if (!ids.includes(a.id)) ids.push(a.id);
      if (a.attribute === 'msid' && a.value !== undefined) msidBySsrc.set(a.id, a.value);
    }
    const mediaMsid = m.msid?.[0];
    const fallbackMsid = mediaMsid ? `${mediaMsid.id} ${mediaMsid.appdata ?? ''}`.trim() : undefined;
    const sources: SsrcInfo[] = sending
      ? ids.map((ssrc) => {
          const s: SsrcInfo = { ssrc, name: sourceName(endpoint, kind) };
          const msid = msidBySsrc.get(ssrc) ?? fallbackMsid;
          if (msid !== undefined) s.msid = msid;
          if (kind === 'video') s.videoType = videoType;
          return s;
        })
      : [];
    const groups: SsrcGroup[] = sending
      ? (m.ssrcGroups ?? []).map((g) => ({
          semantics: g.semantics,
          ssrcs: g.ssrcs.trim().split(/\s+/).map((s) => uint(s, 'ssrc-group ssrc')),
        }))
      : [];
    contents.push({ name: kind, kind, direction, codecs: codecsOf(m), sources, groups });
  }

  const transport: Transport = { fingerprints: [], candidates: [] };
  const withIce = session.media.find((m) => m.iceUfrag !== undefined) ?? session.media[0];
  transport.ufrag = withIce?.iceUfrag ?? session.iceUfrag;
  transport.pwd = withIce?.icePwd ?? session.icePwd;
  const fp = withIce?.fingerprint ?? session.fingerprint;
  if (fp) {
    transport.fingerprints.push({ hash: fp.type.toLowerCase(), value: fp.hash, setup: withIce?.setup ?? session.setup ?? 'active' });
  }
  const seen = new Set<string>();
  for (const m of session.media) {
    for (const c of m.candidates ?? []) {
      if (c.transport.toLowerCase() !== 'udp') continue;
      const key = `${c.ip}|${String(c.port)}|${String(c.component)}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const cand: Candidate = {
        foundation: c.foundation,
        component: c.component,
        protocol: 'udp',
        priority: c.priority,
        ip: c.ip,
        port: c.port,
        type: c.type,
        generation: c.generation ?? 0,
      };
      if (c.raddr !== undefined) cand.relAddr = c.raddr;
      if (c.rport !== undefined) cand.relPort = c.rport;
      transport.candidates.push(cand);
    }
  }
  return { contents, transport };
}

/** Simulcast layers sent (quarter, half and full size: the browser scales). */
export const SIMULCAST_LAYERS = 3;

/**
 * A further SSRC for layer `layer` (or its RTX partner) of the stream
 * whose first SSRC is `primary`: derived, not random, so that every
 * renegotiation produces the same numbers without keeping state.
 */
export function derivedSsrc(primary: number, layer: number, rtx: boolean): number {
  let x = (primary ^ Math.imul(layer + 1, 0x9e3779b1) ^ (rtx ? 0x85ebca6b : 0)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x === 0 ? 1 : x;
}

/**
 * Simulcast, as Jitsi's clients send it: before setLocalDescription the
 * sending `video` m-section gets two more SSRCs (each with an RTX partner
 * when the first has one) and `a=ssrc-group:SIM`. The browser then encodes
 * three layers, lowest first; parseLocalAnswer carries the groups into
 * session-accept, and the focus shows receivers only the first SSRC, under
 * which the bridge forwards the layer each receiver can take.
 */
export function prepareLocalAnswer(sdp: string, simulcast = true): string {
  if (!simulcast) return sdp;
  const parsed: SessionDescription = parseSdp(sdp);
  let changed = false;
  for (const m of parsed.media) {
    if (m.type !== 'video' || String(m.mid) !== 'video') continue;
    if (m.direction !== 'sendonly' && m.direction !== 'sendrecv') continue;
    const ssrcs = m.ssrcs ?? [];
    const groups = m.ssrcGroups ?? [];
    if (ssrcs.length === 0 || groups.some((g) => g.semantics === 'SIM')) continue;
    const fid = groups.find((g) => g.semantics === 'FID');
    const fidSsrcs = fid ? fid.ssrcs.split(' ').map(Number) : [];
    const first = fidSsrcs[0] ?? Number(ssrcs[0]?.id);
    const rtx = fidSsrcs[1];
    const attrs = ssrcs.filter((a) => a.id === first);
    const sim = [first];
    for (let layer = 1; layer < SIMULCAST_LAYERS; layer++) {
      const media = derivedSsrc(first, layer, false);
      sim.push(media);
      for (const a of attrs) ssrcs.push({ id: media, attribute: a.attribute, value: a.value });
      if (rtx !== undefined) {
        const r = derivedSsrc(first, layer, true);
        for (const a of attrs) ssrcs.push({ id: r, attribute: a.attribute, value: a.value });
        groups.push({ semantics: 'FID', ssrcs: `${media} ${r}` });
      }
    }
    groups.unshift({ semantics: 'SIM', ssrcs: sim.join(' ') });
    m.ssrcs = ssrcs;
    m.ssrcGroups = groups;
    changed = true;
  }
  return changed ? writeSdp(parsed) : sdp;
}

// ------------------------------------------------------- building Jingle

let candidateCounter = 0;
function candidateId(): string {
  candidateCounter += 1;
  return `c${Date.now().toString(36)}${candidateCounter.toString(36)}`;
}

export function transportElement(t: Transport): Element {
  const attrs: Record<string, string> = { xmlns: NS_ICE_UDP };
  if (t.ufrag !== undefined) attrs.ufrag = t.ufrag;
  if (t.pwd !== undefined) attrs.pwd = t.pwd;
  if (t.iceGeneration !== undefined) attrs['ice-generation'] = String(t.iceGeneration);
  const el = xml('transport', attrs);
  for (const fp of t.fingerprints) {
    el.append(xml('fingerprint', { xmlns: NS_DTLS, hash: fp.hash, setup: fp.setup }, fp.value));
  }
  for (const c of t.candidates) {
    el.append(
      xml('candidate', {
        component: c.component,
        foundation: c.foundation,
        generation: c.generation,
        id: candidateId(),
        ip: c.ip,
        network: 0,
        port: c.port,
        priority: c.priority,
        protocol: c.protocol,
        type: c.type,
        'rel-addr': c.relAddr,
        'rel-port': c.relPort,
      }),
    );
  }
  return el;
}

function sourceElements(desc: Element, sources: SsrcInfo[], groups: SsrcGroup[], owner?: string): void {
  for (const s of sources) {
    const src = xml('source', { xmlns: NS_SSMA, ssrc: s.ssrc, name: s.name, videoType: s.videoType });
    if (s.msid !== undefined) src.append(xml('parameter', { name: 'msid', value: s.msid }));
    const o = owner ?? s.owner;
    if (o !== undefined) src.append(xml('ssrc-info', { xmlns: NS_JITMEET, owner: o }));
    desc.append(src);
  }
  for (const g of groups) {
    desc.append(
      xml('ssrc-group', { xmlns: NS_SSMA, semantics: g.semantics }, ...g.ssrcs.map((ssrc) => xml('source', { ssrc }))),
    );
  }
}

function descriptionElement(c: LocalContent, owner: string, withCodecs: boolean): Element {
  const desc = xml('description', { xmlns: NS_RTP, media: c.kind });
  if (withCodecs) {
    for (const p of c.codecs.payloadTypes) {
      const pt = xml('payload-type', { id: p.id, name: p.name, clockrate: p.clockrate, channels: p.channels });
      for (const x of p.parameters) pt.append(xml('parameter', { name: x.name, value: x.value }));
      for (const fb of p.feedback) pt.append(xml('rtcp-fb', { xmlns: NS_RTCP_FB, type: fb.type, subtype: fb.subtype }));
      desc.append(pt);
    }
    for (const h of c.codecs.headerExtensions) desc.append(xml('rtp-hdrext', { xmlns: NS_HDREXT, id: h.id, uri: h.uri }));
  }
  sourceElements(desc, c.sources, c.groups, owner);
  if (withCodecs) desc.append(xml('rtcp-mux'));
  return desc;
}

export interface JingleAddressing {
  sid: string;
  initiator?: string;
  responder?: string;
  /** `<ssrc-info owner>` for local sources: our occupant JID. */
  owner: string;
}

/** session-accept: codecs, local sources and the transport, in `audio` and `video`. */
export function sessionAccept(local: LocalMedia, a: JingleAddressing): Element {
  const j = xml('jingle', {
    xmlns: NS_JINGLE,
    action: 'session-accept',
    initiator: a.initiator,
    responder: a.responder,
    sid: a.sid,
  });
  for (const c of local.contents) {
    const content = xml('content', { creator: 'initiator', name: c.name, senders: 'both' });
    content.append(descriptionElement(c, a.owner, true));
    content.append(transportElement(local.transport));
    j.append(content);
  }
  j.append(
    xml(
      'group',
      { xmlns: NS_GROUPING, semantics: 'BUNDLE' },
      ...local.contents.map((c) => xml('content', { name: c.name })),
    ),
  );
  return j;
}

/** source-add / source-remove of local sources; null when there is nothing to say. */
export function sourceChange(
  action: 'source-add' | 'source-remove',
  contents: LocalContent[],
  a: JingleAddressing,
): Element | null {
  const withSources = contents.filter((c) => c.sources.length > 0);
  if (withSources.length === 0) return null;
  const j = xml('jingle', { xmlns: NS_JINGLE, action, initiator: a.initiator, sid: a.sid });
  for (const c of withSources) {
    const content = xml('content', { creator: 'initiator', name: c.name });
    content.append(descriptionElement(c, a.owner, false));
    j.append(content);
  }
  return j;
}

/** transport-info with the local transport (after an ICE restart). */
export function transportInfo(local: LocalMedia, a: JingleAddressing, iceGeneration?: number): Element {
  const j = xml('jingle', { xmlns: NS_JINGLE, action: 'transport-info', initiator: a.initiator, sid: a.sid });
  const t = iceGeneration === undefined ? local.transport : { ...local.transport, iceGeneration };
  for (const c of local.contents) {
    j.append(xml('content', { creator: 'initiator', name: c.name }, transportElement(t)));
  }
  return j;
}

export function sessionTerminate(a: JingleAddressing, reason = 'success', text?: string): Element {
  return xml(
    'jingle',
    { xmlns: NS_JINGLE, action: 'session-terminate', initiator: a.initiator, sid: a.sid },
    xml('reason', {}, xml(reason), text !== undefined ? xml('text', {}, text) : null),
  );
}

/**
 * What changed between two answers' local sources, per content: SSRCs
 * (with their groups) that appeared go in a source-add, those that
 * disappeared in a source-remove.
 */
export function diffLocalSources(
  before: LocalContent[],
  after: LocalContent[],
): { added: LocalContent[]; removed: LocalContent[] } {
  const pick = (from: LocalContent[], other: LocalContent[]): LocalContent[] =>
    from.map((c) => {
      const o = other.find((x) => x.name === c.name);
      const have = new Set((o?.sources ?? []).map((s) => s.ssrc));
      const sources = c.sources.filter((s) => !have.has(s.ssrc));
      const ids = new Set(sources.map((s) => s.ssrc));
      return { ...c, sources, groups: c.groups.filter((g) => g.ssrcs.every((s) => ids.has(s))) };
    });
  return { added: pick(after, before), removed: pick(before, after) };
}
