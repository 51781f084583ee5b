import { describe, expect, it } from 'vitest';
import { parse as parseSdp } from 'sdp-transform';
import type { MediaDescription } from 'sdp-transform';
import {
  JingleError,
  RemoteDescription,
  diffLocalSources,
  endpointOf,
  groupSources,
  parseJingle,
  parseLocalAnswer,
  sessionAccept,
  sessionTerminate,
  sourceChange,
  transportInfo,
} from '../src/lib/jingle-sdp';
import { NS_COLIBRI, NS_DTLS, NS_GROUPING, NS_ICE_UDP, NS_JINGLE, NS_JITMEET, NS_RTP, NS_SSMA } from '../src/lib/ns';
import { child, fixture, parseXml } from './helpers';
import { focusParse } from './focus-rules';

const ME = 'a1b2c3d4';
const ME_JID = `room1@conference.localhost/${ME}`;
const BRIDGE_FP =
  '0B:30:55:7A:9F:C4:E9:0E:33:58:7D:A2:C7:EC:11:36:5B:80:A5:CA:EF:14:39:5E:83:A8:CD:F2:17:3C:61:86';
const CHROME_FP =
  '7C:1E:55:D3:0A:9B:42:6F:E1:08:B7:3C:99:5A:2D:C4:F0:61:8E:13:A7:4B:D2:39:06:EF:7A:C5:20:94:5D:BB';

function initiate() {
  const iq = parseXml(fixture('session-initiate.xml'));
  return parseJingle(child(iq, 'jingle', NS_JINGLE));
}

function jingleFixture(name: string) {
  return parseJingle(parseXml(fixture(name)));
}

function section(sdp: string, mid: string): MediaDescription {
  const m = parseSdp(sdp).media.find((x) => x.mid === mid);
  if (!m) throw new Error(`no m-section ${mid}`);
  return m;
}

function ssrcIds(m: MediaDescription): number[] {
  return [...new Set((m.ssrcs ?? []).map((s) => s.id))];
}

describe('parseJingle on a session-initiate as jingle.rs builds it', () => {
  it('reads action, codecs, transport, sources, bundle and bridge session', () => {
    const j = initiate();
    expect(j.action).toBe('session-initiate');
    expect(j.sid).toBe('s7f3k2');
    expect(j.initiator).toBe('focus.localhost/focus');
    expect(j.contents.map((c) => [c.name, c.kind, c.senders])).toEqual([
      ['audio', 'audio', 'both'],
      ['video', 'video', 'both'],
    ]);
    expect(j.bundle).toEqual(['audio', 'video']);
    expect(j.bridgeSessionId).toBe('bs-1');

    const [audio, video] = j.contents;
    expect(audio?.codecs?.payloadTypes.map((p) => p.id)).toEqual([111]);
    expect(audio?.codecs?.payloadTypes[0]).toEqual({
      id: 111,
      name: 'opus',
      clockrate: 48000,
      channels: 2,
      parameters: [
        { name: 'minptime', value: '10' },
        { name: 'useinbandfec', value: '1' },
      ],
      feedback: [{ type: 'transport-cc' }],
    });
    expect(audio?.codecs?.headerExtensions.map((h) => h.id)).toEqual([1, 3, 5]);
    expect(video?.codecs?.payloadTypes.map((p) => `${String(p.id)}:${p.name}`)).toEqual([
      '100:VP8', '96:rtx', '101:VP9', '97:rtx', '107:H264', '99:rtx', '41:AV1', '42:rtx',
    ]);
    expect(video?.codecs?.payloadTypes[0]?.feedback).toContainEqual({ type: 'nack', subtype: 'pli' });

    const t = audio?.transport;
    expect(t?.ufrag).toBe('bRdg');
    expect(t?.pwd).toBe('bridgepassword0123456789');
    expect(t?.fingerprints).toEqual([{ hash: 'sha-256', setup: 'actpass', value: BRIDGE_FP }]);
    expect(t?.candidates.map((c) => `${c.ip}:${String(c.port)}/${c.protocol}/${c.type}`)).toEqual([
      '127.0.0.1:10000/udp/host',
      '::1:10000/udp/host',
    ]);
    expect(t?.websocketUrl).toBe(
      'wss://localhost:8443/colibri-ws/conclave/room1/a1b2c3d4?pwd=bridgepassword0123456789',
    );

    expect(audio?.sources.map((s) => [s.ssrc, s.name, s.owner])).toEqual([
      [1001, 'b0b0b0b0-a0', 'room1@conference.localhost/b0b0b0b0'],
      [4001, 'ca401ca4-a0', 'ca401ca4'],
    ]);
    expect(video?.groups).toEqual([{ semantics: 'FID', ssrcs: [2001, 3001] }]);
  });

  it('refuses bad numbers and missing attributes', () => {
    const bad = (body: string) => () =>
      parseJingle(parseXml(`<jingle xmlns='urn:xmpp:jingle:1' action='source-add' sid='s'>${body}</jingle>`));
    const src = (ssrc: string) =>
      `<content name='video'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'><source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='${ssrc}'/></description></content>`;
    expect(bad(src('12x'))).toThrow(JingleError);
    expect(bad(src('4294967296'))).toThrow(JingleError);
    expect(bad(src('-1'))).toThrow(JingleError);
    expect(() => parseJingle(parseXml("<jingle xmlns='urn:xmpp:jingle:1' action='session-accept'/>"))).toThrow(
      /sid/,
    );
    expect(() => parseJingle(parseXml("<jingle xmlns='urn:other' action='x' sid='s'/>"))).toThrow(JingleError);
  });

  it('reads a session-terminate reason', () => {
    const j = parseJingle(
      parseXml(
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='s'><reason><gone/><text>bye</text></reason></jingle>",
      ),
    );
    expect(j.reason).toBe('gone');
  });
});

describe('grouping sources', () => {
  it('takes the owner from an occupant JID or a bare endpoint id', () => {
    expect(endpointOf('room1@conference.localhost/b0b0b0b0')).toBe('b0b0b0b0');
    expect(endpointOf('ca401ca4')).toBe('ca401ca4');
  });

  it('ties FID partners, orders the primary first, falls back to the name for the owner', () => {
    const [s, ...rest] = groupSources(
      'video',
      [
        { ssrc: 20, name: 'feedf00d-v0' },
        { ssrc: 10, name: 'feedf00d-v0', msid: 'st tr', videoType: 'desktop' },
      ],
      [{ semantics: 'FID', ssrcs: [10, 20] }],
    );
    expect(rest).toEqual([]);
    expect(s).toEqual({
      kind: 'video',
      owner: 'feedf00d',
      name: 'feedf00d-v0',
      videoType: 'desktop',
      streamId: 'st',
      trackId: 'tr',
      ssrcs: [10, 20],
      groups: [{ semantics: 'FID', ssrcs: [10, 20] }],
    });
  });

  it('keeps separate names separate and synthesises what is missing', () => {
    const s = groupSources(
      'video',
      [
        { ssrc: 1, name: 'e1-v0', owner: 'r@m/e1' },
        { ssrc: 2, name: 'e1-v1', owner: 'r@m/e1', videoType: 'desktop' },
        { ssrc: 3 },
      ],
      [],
    );
    expect(s.map((x) => [x.name, x.owner, x.streamId, x.trackId])).toEqual([
      ['e1-v0', 'e1', 'e1', 'e1-v0'],
      ['e1-v1', 'e1', 'e1', 'e1-v1'],
      ['unknown-v3', 'unknown', 'unknown', 'unknown-v3'],
    ]);
  });
});

describe('the SDP offer written for the browser', () => {
  const { description, change } = RemoteDescription.fromSessionInitiate(initiate());
  const sdp = description.toSdp();
  const parsed = parseSdp(sdp);

  it('gives every remote source its own mid', () => {
    expect(change.removed).toEqual([]);
    expect(change.added.map((a) => [a.mid, a.source.owner, a.source.name])).toEqual([
      ['audio-1', 'b0b0b0b0', 'b0b0b0b0-a0'],
      ['audio-2', 'ca401ca4', 'ca401ca4-a0'],
      ['video-1', 'b0b0b0b0', 'b0b0b0b0-v0'],
      ['video-2', 'ca401ca4', 'ca401ca4-v0'],
    ]);
  });

  it('bundles local audio, local video, then one m-section per remote source', () => {
    expect(parsed.groups).toEqual([{ type: 'BUNDLE', mids: 'audio video audio-1 audio-2 video-1 video-2' }]);
    expect(parsed.media.map((m) => [m.type, m.mid, m.direction])).toEqual([
      ['audio', 'audio', 'recvonly'],
      ['video', 'video', 'recvonly'],
      ['audio', 'audio-1', 'sendonly'],
      ['audio', 'audio-2', 'sendonly'],
      ['video', 'video-1', 'sendonly'],
      ['video', 'video-2', 'sendonly'],
    ]);
    expect(sdp.startsWith('v=0\r\no=- ')).toBe(true);
    expect(sdp).toContain('a=msid-semantic: WMS *');
  });

  it('puts the bridge ICE credentials and DTLS fingerprint in every m-section', () => {
    for (const m of parsed.media) {
      expect(m.iceUfrag).toBe('bRdg');
      expect(m.icePwd).toBe('bridgepassword0123456789');
      expect(m.fingerprint).toEqual({ type: 'sha-256', hash: BRIDGE_FP });
      expect(m.setup).toBe('actpass');
      expect(m.rtcpMux).toBe('rtcp-mux');
      expect(m.protocol).toBe('UDP/TLS/RTP/SAVPF');
      expect(m.port).toBe(9);
    }
  });

  it('puts the candidates on the BUNDLE-tag m-section', () => {
    const [first, ...rest] = parsed.media;
    expect(first?.candidates?.map((c) => `${c.ip} ${String(c.port)} ${c.transport} ${c.type} ${String(c.priority)}`)).toEqual([
      '127.0.0.1 10000 udp host 2130706431',
      '::1 10000 udp host 2130706175',
    ]);
    for (const m of rest) expect(m.candidates).toBeUndefined();
    expect(sdp).toContain('a=candidate:1 1 udp 2130706431 127.0.0.1 10000 typ host generation 0');
  });

  it('writes the codecs as offered', () => {
    const audio = section(sdp, 'audio');
    expect(String(audio.payloads)).toBe('111');
    expect(audio.rtp).toEqual([{ payload: 111, codec: 'opus', rate: 48000, encoding: 2 }]);
    expect(audio.fmtp).toEqual([{ payload: 111, config: 'minptime=10;useinbandfec=1' }]);
    expect(audio.rtcpFb).toEqual([{ payload: 111, type: 'transport-cc' }]);
    expect(audio.ext?.map((e) => [e.value, e.uri])).toEqual([
      [1, 'urn:ietf:params:rtp-hdrext:ssrc-audio-level'],
      [3, 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time'],
      [5, 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01'],
    ]);
    const video = section(sdp, 'video-2');
    expect(video.payloads).toBe('100 96 101 97 107 99 41 42');
    expect(video.fmtp).toContainEqual({ payload: 96, config: 'apt=100' });
    expect(video.fmtp).toContainEqual({
      payload: 107,
      config: 'profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1',
    });
    expect(video.rtcpFb).toContainEqual({ payload: 100, type: 'nack', subtype: 'pli' });
    expect(video.rtcpFb).toContainEqual({ payload: 41, type: 'goog-remb' });
    expect(sdp).toContain('a=rtpmap:100 VP8/90000\r\n');
    expect(sdp).not.toContain('VP8/90000/');
    expect(video.ext?.map((e) => e.value)).toEqual([3, 5]);
  });

  it('signals each remote source by SSRC with its msid and groups, none on the local m-sections', () => {
    expect(section(sdp, 'audio').ssrcs).toBeUndefined();
    expect(section(sdp, 'video').ssrcs).toBeUndefined();
    expect(section(sdp, 'audio').msid).toBeUndefined();

    const bobAudio = section(sdp, 'audio-1');
    expect(ssrcIds(bobAudio)).toEqual([1001]);
    expect(bobAudio.msid).toEqual([{ id: 'bob-stream', appdata: 'bob-audio-track' }]);
    expect(bobAudio.ssrcs).toEqual([
      { id: 1001, attribute: 'cname', value: 'b0b0b0b0' },
      { id: 1001, attribute: 'msid', value: 'bob-stream bob-audio-track' },
    ]);

    const bobVideo = section(sdp, 'video-1');
    expect(ssrcIds(bobVideo)).toEqual([2001, 3001]);
    expect(bobVideo.ssrcGroups).toEqual([{ semantics: 'FID', ssrcs: '2001 3001' }]);
    expect(sdp).toContain('a=ssrc-group:FID 2001 3001\r\n');
    expect(sdp).toContain('a=msid:bob-stream bob-video-track\r\n');

    const carolVideo = section(sdp, 'video-2');
    expect(ssrcIds(carolVideo)).toEqual([5001]);
    expect(carolVideo.ssrcGroups).toBeUndefined();
  });

  it('raises the session version on every offer', () => {
    const again = parseSdp(description.toSdp());
    expect(again.origin.sessionVersion).toBe(parsed.origin.sessionVersion + 1);
    expect(again.origin.sessionId).toBe(parsed.origin.sessionId);
  });
});

describe('extmap-allow-mixed', () => {
  it('carries the offer\'s two-byte header permission into every m-section it was given for', () => {
    const xmlText = fixture('session-initiate.xml').replace(
      /(<description[^>]*media=["']video["'][^>]*>)/,
      "$1<extmap-allow-mixed xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0'/>",
    );
    const offer = parseJingle(child(parseXml(xmlText), 'jingle', NS_JINGLE));
    const sdp = RemoteDescription.fromSessionInitiate(offer).description.toSdp();
    expect(section(sdp, 'video').extmapAllowMixed).toBe('extmap-allow-mixed');
    expect(section(sdp, 'audio').extmapAllowMixed).toBeUndefined();
    const plain = RemoteDescription.fromSessionInitiate(initiate()).description.toSdp();
    expect(section(plain, 'video').extmapAllowMixed).toBeUndefined();
  });
});

describe('source-add and source-remove', () => {
  it('adds new m-sections for new sources, keeping the old ones in place', () => {
    const { description } = RemoteDescription.fromSessionInitiate(initiate());
    const before = parseSdp(description.toSdp()).media.map((m) => m.mid);
    const add = jingleFixture('source-add.xml');
    expect(add.action).toBe('source-add');
    const change = description.addSources(add.contents);
    expect(change.removed).toEqual([]);
    expect(change.added.map((a) => [a.mid, a.source.owner, a.source.ssrcs])).toEqual([
      ['audio-3', 'da7ed00d', [6001]],
      ['video-3', 'da7ed00d', [7001, 7002]],
    ]);
    const sdp = description.toSdp();
    const parsed = parseSdp(sdp);
    expect(parsed.media.map((m) => m.mid)).toEqual([...before, 'audio-3', 'video-3']);
    expect(parsed.groups?.[0]?.mids).toBe('audio video audio-1 audio-2 video-1 video-2 audio-3 video-3');
    expect(section(sdp, 'video-3').ssrcGroups).toEqual([{ semantics: 'FID', ssrcs: '7001 7002' }]);
    expect(section(sdp, 'video-3').direction).toBe('sendonly');
  });

  it('leaves a removed source m-section inactive and without SSRCs, then reuses it', () => {
    const { description } = RemoteDescription.fromSessionInitiate(initiate());
    description.toSdp();
    const removed = description.removeSources(jingleFixture('source-remove.xml').contents);
    expect(removed.added).toEqual([]);
    expect(removed.removed.map((r) => [r.mid, r.source.name])).toEqual([
      ['audio-1', 'b0b0b0b0-a0'],
      ['video-1', 'b0b0b0b0-v0'],
    ]);
    let sdp = description.toSdp();
    let parsed = parseSdp(sdp);
    expect(parsed.media.map((m) => [m.mid, m.direction])).toEqual([
      ['audio', 'recvonly'],
      ['video', 'recvonly'],
      ['audio-1', 'inactive'],
      ['audio-2', 'sendonly'],
      ['video-1', 'inactive'],
      ['video-2', 'sendonly'],
    ]);
    expect(section(sdp, 'audio-1').ssrcs).toBeUndefined();
    expect(section(sdp, 'video-1').ssrcGroups).toBeUndefined();
    expect(section(sdp, 'video-1').msid).toBeUndefined();
    expect(section(sdp, 'video-1').port).toBe(9);
    expect(parsed.groups?.[0]?.mids).toBe('audio video audio-1 audio-2 video-1 video-2');
    expect(sdp).not.toMatch(/a=ssrc:(1001|2001|3001) /);

    // The next sources reuse the freed m-sections, kind for kind.
    const added = description.addSources(jingleFixture('source-add.xml').contents);
    expect(added.added.map((a) => [a.mid, a.source.name])).toEqual([
      ['audio-1', 'da7ed00d-a0'],
      ['video-1', 'da7ed00d-v0'],
    ]);
    sdp = description.toSdp();
    parsed = parseSdp(sdp);
    expect(parsed.media).toHaveLength(6);
    expect(section(sdp, 'audio-1').direction).toBe('sendonly');
    expect(ssrcIds(section(sdp, 'video-1'))).toEqual([7001, 7002]);
  });

  it('ignores a source announced twice and replaces one re-announced with new SSRCs', () => {
    const { description } = RemoteDescription.fromSessionInitiate(initiate());
    const add = jingleFixture('source-add.xml');
    description.addSources(add.contents);
    expect(description.addSources(add.contents)).toEqual({ added: [], removed: [] });

    const again = description.addSources([
      { name: 'audio', kind: 'audio', sources: [{ ssrc: 6002, name: 'da7ed00d-a0', owner: 'da7ed00d' }], groups: [] },
    ]);
    expect(again.removed.map((r) => [r.mid, r.source.ssrcs])).toEqual([['audio-3', [6001]]]);
    expect(again.added.map((r) => [r.mid, r.source.ssrcs])).toEqual([['audio-3', [6002]]]);
  });

  it('removing unknown SSRCs changes nothing', () => {
    const { description } = RemoteDescription.fromSessionInitiate(initiate());
    const r = description.removeSources([{ name: 'audio', kind: 'audio', sources: [{ ssrc: 999 }], groups: [] }]);
    expect(r).toEqual({ added: [], removed: [] });
  });
});

describe('transport-info', () => {
  it('adds candidates under the same credentials, replaces the transport on new ones', () => {
    const { description } = RemoteDescription.fromSessionInitiate(initiate());
    const more = description.updateTransport({
      ufrag: 'bRdg',
      pwd: 'bridgepassword0123456789',
      fingerprints: [],
      candidates: [
        { foundation: '3', component: 1, protocol: 'udp', priority: 1, ip: '192.0.2.7', port: 10000, type: 'srflx', generation: 0 },
      ],
    });
    expect(more).toBe(false);
    expect(description.transport.candidates).toHaveLength(3);

    const restart = description.updateTransport({
      ufrag: 'new1',
      pwd: 'newpassword',
      iceGeneration: 1,
      fingerprints: [],
      candidates: [
        { foundation: '1', component: 1, protocol: 'udp', priority: 5, ip: '127.0.0.1', port: 10001, type: 'host', generation: 0 },
      ],
    });
    expect(restart).toBe(true);
    const m = section(description.toSdp(), 'audio');
    expect([m.iceUfrag, m.icePwd]).toEqual(['new1', 'newpassword']);
    expect(m.fingerprint?.hash).toBe(BRIDGE_FP);
    expect(m.candidates?.map((c) => c.port)).toEqual([10001]);
    expect(description.transport.websocketUrl).toContain('/colibri-ws/');
  });

  it('refuses a session-initiate without a transport', () => {
    const j = initiate();
    for (const c of j.contents) delete c.transport;
    expect(() => RemoteDescription.fromSessionInitiate(j)).toThrow(JingleError);
  });
});

describe('the session-accept built from a Chrome answer', () => {
  const answer = fixture('chrome-answer.sdp');
  const local = parseLocalAnswer(answer, ME);
  const addressing = {
    sid: 's7f3k2',
    initiator: 'focus.localhost/focus',
    responder: `${ME}@localhost/res`,
    owner: ME_JID,
  };

  it('takes the local sources from m-sections 0 and 1 only', () => {
    expect(local.contents.map((c) => [c.name, c.direction])).toEqual([
      ['audio', 'sendonly'],
      ['video', 'sendonly'],
    ]);
    const [audio, video] = local.contents;
    expect(audio?.sources).toEqual([
      {
        ssrc: 3735928559,
        name: 'a1b2c3d4-a0',
        msid: '3d1c0a5e-7f0b-4c86-9d1e-5a7b2f0c9e41 0f4b6a9e-2c3d-4e5f-a6b7-c8d9e0f1a2b3',
      },
    ]);
    expect(video?.sources.map((s) => [s.ssrc, s.name, s.videoType, s.msid])).toEqual([
      [2882343476, 'a1b2c3d4-v0', 'camera', '3d1c0a5e-7f0b-4c86-9d1e-5a7b2f0c9e41 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d'],
      [305419896, 'a1b2c3d4-v0', 'camera', '3d1c0a5e-7f0b-4c86-9d1e-5a7b2f0c9e41 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d'],
    ]);
    expect(video?.groups).toEqual([{ semantics: 'FID', ssrcs: [2882343476, 305419896] }]);
  });

  it('takes the transport of the bundle, UDP candidates only', () => {
    expect(local.transport.ufrag).toBe('Zq9X');
    expect(local.transport.pwd).toBe('c8Hf0kL2nQ5rT7vW9yA1bD3e');
    expect(local.transport.fingerprints).toEqual([{ hash: 'sha-256', value: CHROME_FP, setup: 'active' }]);
    expect(local.transport.candidates.map((c) => [c.ip, c.port, c.type, c.relAddr, c.relPort])).toEqual([
      ['192.168.56.1', 54321, 'host', undefined, undefined],
      ['1b7c8e2f-3a4d-4e5f-8a9b-0c1d2e3f4a5b.local', 54322, 'host', undefined, undefined],
      ['203.0.113.9', 61000, 'srflx', '192.168.56.1', 54321],
    ]);
  });

  const accept = sessionAccept(local, addressing);

  it('is shaped as lib-jitsi-meet writes one', () => {
    expect(accept.is('jingle', NS_JINGLE)).toBe(true);
    expect(accept.attrs).toMatchObject({
      action: 'session-accept',
      sid: 's7f3k2',
      initiator: 'focus.localhost/focus',
      responder: 'a1b2c3d4@localhost/res',
    });
    const contents = accept.getChildren('content', NS_JINGLE);
    expect(contents.map((c) => [c.attrs.name, c.attrs.creator, c.attrs.senders])).toEqual([
      ['audio', 'initiator', 'both'],
      ['video', 'initiator', 'both'],
    ]);
    const video = child(contents[1], 'description', NS_RTP);
    expect(video.attrs.media).toBe('video');
    const sources = video.getChildren('source', NS_SSMA);
    expect(sources.map((s) => [s.attrs.ssrc, s.attrs.name, s.attrs.videoType])).toEqual([
      ['2882343476', 'a1b2c3d4-v0', 'camera'],
      ['305419896', 'a1b2c3d4-v0', 'camera'],
    ]);
    expect(child(sources[0], 'ssrc-info', NS_JITMEET).attrs.owner).toBe(ME_JID);
    expect(child(sources[0], 'parameter').attrs).toEqual({
      name: 'msid',
      value: '3d1c0a5e-7f0b-4c86-9d1e-5a7b2f0c9e41 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d',
    });
    const group = child(video, 'ssrc-group', NS_SSMA);
    expect(group.attrs.semantics).toBe('FID');
    expect(group.getChildren('source').map((s) => s.attrs.ssrc)).toEqual(['2882343476', '305419896']);
    expect(video.getChildren('payload-type').map((p) => p.attrs.id)).toEqual([
      '100', '96', '101', '97', '107', '99', '41', '42',
    ]);
    expect(video.getChild('rtcp-mux')).toBeDefined();

    const t = child(contents[0], 'transport', NS_ICE_UDP);
    expect(t.attrs).toMatchObject({ ufrag: 'Zq9X', pwd: 'c8Hf0kL2nQ5rT7vW9yA1bD3e' });
    const fp = child(t, 'fingerprint', NS_DTLS);
    expect(fp.attrs).toMatchObject({ hash: 'sha-256', setup: 'active' });
    expect(fp.getText()).toBe(CHROME_FP);
    expect(t.getChildren('candidate', NS_ICE_UDP).map((c) => c.attrs.protocol)).toEqual(['udp', 'udp', 'udp']);
    expect(t.getChild('web-socket', NS_COLIBRI)).toBeUndefined();
    const bundle = child(accept, 'group', NS_GROUPING);
    expect(bundle.attrs.semantics).toBe('BUNDLE');
    expect(bundle.getChildren('content').map((c) => c.attrs.name)).toEqual(['audio', 'video']);
  });

  it('passes the focus parser (jingle.rs parse, check_sources, validate_owner)', () => {
    // Round-trip through text, as the server receives it.
    const view = focusParse(parseXml(accept.toString()), ME);
    expect(view.action).toBe('session-accept');
    expect(view.transport?.ufrag).toBe('Zq9X');
    expect(view.transport?.fingerprints).toEqual([{ hash: 'sha-256', value: CHROME_FP, setup: 'active' }]);
    // The mDNS candidate is skipped by the focus, the rest kept.
    expect(view.transport?.candidates.map((c) => c.ip)).toEqual(['192.168.56.1', '203.0.113.9']);
    expect(view.sources.map((s) => [s.kind, s.ssrc])).toEqual([
      ['audio', 3735928559],
      ['video', 2882343476],
      ['video', 305419896],
    ]);
    expect(view.groups).toEqual([{ kind: 'video', semantics: 'FID', ssrcs: [2882343476, 305419896] }]);
    expect(() => focusParse(parseXml(accept.toString()), 'someoneelse')).toThrow(/not someoneelse/);
  });

  it('announces no sources for a local m-section that does not send', () => {
    const inactive = answer.replace(/a=sendonly\r\n(a=msid:\S+ 9a8b)/, 'a=inactive\r\n$1');
    const l = parseLocalAnswer(inactive, ME);
    expect(l.contents[1]?.direction).toBe('inactive');
    expect(l.contents[1]?.sources).toEqual([]);
    expect(l.contents[1]?.groups).toEqual([]);
    const view = focusParse(sessionAccept(l, addressing), ME);
    expect(view.sources.map((s) => s.ssrc)).toEqual([3735928559]);

    // Video turned on later: the difference is a source-add of the video source.
    const diff = diffLocalSources(l.contents, local.contents);
    expect(diff.removed.every((c) => c.sources.length === 0)).toBe(true);
    const add = sourceChange('source-add', diff.added, addressing);
    if (!add) throw new Error('expected a source-add');
    const addView = focusParse(parseXml(add.toString()), ME);
    expect(addView.action).toBe('source-add');
    expect(addView.transport).toBeUndefined();
    expect(addView.sources.map((s) => [s.kind, s.ssrc])).toEqual([
      ['video', 2882343476],
      ['video', 305419896],
    ]);
    expect(addView.groups).toHaveLength(1);
    expect(sourceChange('source-remove', diff.removed, addressing)).toBeNull();

    const back = diffLocalSources(local.contents, l.contents);
    const rm = sourceChange('source-remove', back.removed, addressing);
    if (!rm) throw new Error('expected a source-remove');
    expect(focusParse(rm, ME).sources.map((s) => s.ssrc)).toEqual([2882343476, 305419896]);
  });

  it('writes transport-info and session-terminate', () => {
    const ti = transportInfo(local, addressing, 2);
    const view = focusParse(ti, ME);
    expect(view.action).toBe('transport-info');
    expect(view.sources).toEqual([]);
    expect(child(child(ti, 'content', NS_JINGLE), 'transport', NS_ICE_UDP).attrs['ice-generation']).toBe('2');
    const term = sessionTerminate(addressing);
    expect(term.toString()).toBe(
      '<jingle xmlns="urn:xmpp:jingle:1" action="session-terminate" initiator="focus.localhost/focus" sid="s7f3k2"><reason><success/></reason></jingle>',
    );
  });
});

describe('an answer captured from Chromium 156 (headless, fake devices) to our offer', () => {
  // No `a=ssrc:<n> msid:` lines: Chromium 156 writes only cname per SSRC,
  // so the msid comes from the m-section's a=msid.
  const local = parseLocalAnswer(fixture('chrome-156-answer.sdp'), ME);

  it('yields the sources, msids and UDP candidates', () => {
    expect(local.contents.map((c) => [c.name, c.direction, c.sources.length])).toEqual([
      ['audio', 'sendonly', 1],
      ['video', 'sendonly', 2],
    ]);
    expect(local.contents[0]?.sources[0]).toEqual({
      ssrc: 1158658942,
      name: 'a1b2c3d4-a0',
      msid: 'cfdfdc7a-c732-458c-84c2-7882390e56d0 f38006d7-9f1e-4884-9dc9-3f0d13897969',
    });
    expect(local.contents[1]?.groups).toEqual([{ semantics: 'FID', ssrcs: [3965390212, 1339053988] }]);
    expect(local.contents[1]?.sources.every((s) => s.msid?.endsWith(' 824dc383-acbe-471d-be50-91f00ada84cc'))).toBe(true);
    expect(local.transport.candidates.map((c) => `${c.ip}:${String(c.port)}`)).toEqual(['192.0.2.2:43670', 'fd00::2:54025']);
  });

  it('makes a session-accept the focus accepts', () => {
    const view = focusParse(
      parseXml(sessionAccept(local, { sid: 's7f3k2', owner: ME_JID, initiator: 'focus.localhost/focus' }).toString()),
      ME,
    );
    expect(view.sources.map((s) => s.ssrc)).toEqual([1158658942, 3965390212, 1339053988]);
    expect(view.transport?.fingerprints[0]?.setup).toBe('active');
  });
});

describe('simulcast in the local answer', () => {
  const answer = [
    'v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE audio video',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'c=IN IP4 0.0.0.0', 'a=mid:audio', 'a=sendonly', 'a=rtpmap:111 opus/48000/2',
    'a=ssrc:11 cname:c', 'a=ssrc:11 msid:s a',
    'm=video 9 UDP/TLS/RTP/SAVPF 100 96', 'c=IN IP4 0.0.0.0', 'a=mid:video', 'a=sendonly',
    'a=rtpmap:100 VP8/90000', 'a=rtpmap:96 rtx/90000', 'a=fmtp:96 apt=100',
    'a=ssrc-group:FID 21 22', 'a=ssrc:21 cname:c', 'a=ssrc:21 msid:s v', 'a=ssrc:22 cname:c', 'a=ssrc:22 msid:s v',
    '',
  ].join('\r\n');

  it('adds two layers with RTX and a SIM group to the sending video section only', async () => {
    const { prepareLocalAnswer, derivedSsrc } = await import('../src/lib/jingle-sdp');
    const out = prepareLocalAnswer(answer);
    const l1 = derivedSsrc(21, 1, false);
    const l2 = derivedSsrc(21, 2, false);
    expect(out).toContain(`a=ssrc-group:SIM 21 ${String(l1)} ${String(l2)}`);
    expect(out).toContain(`a=ssrc-group:FID ${String(l1)} ${String(derivedSsrc(21, 1, true))}`);
    expect(out).toContain(`a=ssrc:${String(l2)} msid:s v`);
    // audio untouched, and a second pass changes nothing
    expect(out.match(/a=ssrc:11 /g)).toHaveLength(2);
    expect(prepareLocalAnswer(out)).toBe(out);
    const all = [21, 22, l1, l2, derivedSsrc(21, 1, true), derivedSsrc(21, 2, true)];
    expect(new Set(all).size).toBe(6);
  });

  it('leaves a section that sends nothing alone', async () => {
    const { prepareLocalAnswer } = await import('../src/lib/jingle-sdp');
    const recv = answer.replace(/a=sendonly/g, 'a=inactive');
    expect(prepareLocalAnswer(recv)).toBe(recv);
  });
});
