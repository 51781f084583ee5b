import { describe, expect, it } from 'vitest';
import { parse as parseSdp, write as writeSdp } from 'sdp-transform';
import type { MediaDescription, SessionDescription } from 'sdp-transform';
import type { Element } from '@xmpp/client';
import { JingleSession, type RemoteTrack, type SessionHost } from '../src/lib/jingle-session';
import { parseJingle, type JingleMessage } from '../src/lib/jingle-sdp';
import { NS_JINGLE } from '../src/lib/ns';
import { child, fixture, parseXml } from './helpers';
import { focusParse } from './focus-rules';

// A stand-in for RTCPeerConnection that answers like a Unified Plan
// browser: one transceiver per offered m-section, in order, SSRCs for what
// the local transceivers send, new ICE credentials when the offer's change.

interface FakeTrack {
  kind: string;
  id: string;
  getSettings?: () => { height?: number };
}

class FakeSender {
  track: FakeTrack | null = null;
  streams = 0;
  params: { encodings: RTCRtpEncodingParameters[] } = { encodings: [{}, {}, {}] };
  getParameters(): { encodings: RTCRtpEncodingParameters[] } {
    return { encodings: this.params.encodings.map((e) => ({ ...e })) };
  }
  setParameters(p: { encodings: RTCRtpEncodingParameters[] }): Promise<void> {
    this.params = p;
    return Promise.resolve();
  }
  replaceTrack(t: FakeTrack | null): Promise<void> {
    this.track = t;
    return Promise.resolve();
  }
  setStreams(): void {
    this.streams += 1;
  }
}

class FakeTransceiver {
  direction: RTCRtpTransceiverDirection = 'recvonly';
  readonly sender = new FakeSender();
  readonly receiver: { track: FakeTrack };
  private ssrcs: number[] | null = null;
  constructor(
    readonly mid: string,
    readonly kind: string,
    n: number,
  ) {
    this.receiver = { track: { kind, id: `remote-${String(n)}` } };
  }
  ssrcsFor(): number[] {
    this.ssrcs ??= this.kind === 'audio' ? [nextSsrc()] : [nextSsrc(), nextSsrc()];
    return this.ssrcs;
  }
  resetSsrcs(): void {
    this.ssrcs = null;
  }
}

let ssrcCounter = 5000;
function nextSsrc(): number {
  ssrcCounter += 1;
  return ssrcCounter;
}

class FakePeerConnection extends EventTarget {
  iceGatheringState = 'complete';
  iceConnectionState = 'new';
  localDescription: { type: string; sdp: string } | null = null;
  remoteOffers: string[] = [];
  candidates: RTCIceCandidateInit[] = [];
  closed = false;
  failNext = false;
  private readonly transceivers: FakeTransceiver[] = [];
  private remote: SessionDescription | null = null;
  private remoteUfrag = '';
  private localUfrag = 'loc0';

  setRemoteDescription(d: { type: string; sdp: string }): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      return Promise.reject(new Error('offer refused'));
    }
    this.remoteOffers.push(d.sdp);
    const s = parseSdp(d.sdp);
    s.media.forEach((m, i) => {
      const t = this.transceivers[i];
      if (!t) this.transceivers.push(new FakeTransceiver(m.mid ?? '', m.type, i));
      else if (t.mid !== m.mid) throw new Error(`m-line ${String(i)} changed mid ${t.mid} -> ${String(m.mid)}`);
    });
    const ufrag = s.media[0]?.iceUfrag ?? '';
    if (this.remoteUfrag !== '' && ufrag !== this.remoteUfrag) this.localUfrag = `loc${String(this.remoteOffers.length)}`;
    this.remoteUfrag = ufrag;
    this.remote = s;
    return Promise.resolve();
  }

  getTransceivers(): FakeTransceiver[] {
    return this.transceivers;
  }

  createAnswer(): Promise<{ type: string; sdp: string }> {
    const offer = this.remote;
    if (!offer) throw new Error('no offer');
    const media = offer.media.map((m, i): MediaDescription => {
      const t = this.transceivers[i];
      if (!t) throw new Error('no transceiver');
      let direction: MediaDescription['direction'] = 'inactive';
      if (m.direction === 'recvonly' && t.sender.track && t.direction === 'sendonly') direction = 'sendonly';
      if (m.direction === 'sendonly' && t.direction !== 'inactive') direction = 'recvonly';
      const a: MediaDescription = {
        type: m.type,
        port: 9,
        protocol: m.protocol,
        payloads: String(m.payloads),
        rtp: m.rtp,
        fmtp: m.fmtp,
        connection: { version: 4, ip: '0.0.0.0' },
        mid: m.mid ?? '',
        direction,
        iceUfrag: this.localUfrag,
        icePwd: `pwd-${this.localUfrag}-0123456789`,
        fingerprint: { type: 'sha-256', hash: 'AA:BB:CC' },
        setup: 'active',
        rtcpMux: 'rtcp-mux',
      };
      if (i === 0) {
        a.candidates = [
          { foundation: '1', component: 1, transport: 'udp', priority: 2122260223, ip: '127.0.0.1', port: 40000 + this.remoteOffers.length, type: 'host', generation: 0 },
        ];
      }
      if (direction === 'sendonly') {
        const ssrcs = t.ssrcsFor();
        a.msid = [{ id: 'local', appdata: `${t.kind}-track` }];
        a.ssrcs = ssrcs.map((id) => ({ id, attribute: 'cname', value: 'me' }));
        if (ssrcs.length === 2) a.ssrcGroups = [{ semantics: 'FID', ssrcs: ssrcs.join(' ') }];
      } else {
        t.resetSsrcs();
      }
      return a;
    });
    const s: SessionDescription = {
      version: 0,
      origin: { username: '-', sessionId: 1, sessionVersion: 2, netType: 'IN', ipVer: 4, address: '127.0.0.1' },
      name: '-',
      timing: { start: 0, stop: 0 },
      groups: offer.groups ?? [],
      media,
    };
    return Promise.resolve({ type: 'answer', sdp: writeSdp(s) });
  }

  setLocalDescription(d: { type: string; sdp: string }): Promise<void> {
    this.localDescription = d;
    return Promise.resolve();
  }

  addIceCandidate(c: RTCIceCandidateInit): Promise<void> {
    this.candidates.push(c);
    return Promise.resolve();
  }

  close(): void {
    this.closed = true;
  }
}

function setup() {
  const sent: Element[] = [];
  const added: RemoteTrack[] = [];
  const removed: RemoteTrack[] = [];
  const failures: unknown[] = [];
  const pcs: FakePeerConnection[] = [];
  const host: SessionHost = {
    endpointId: 'a1b2c3d4',
    ownerJid: 'room1@conference.localhost/a1b2c3d4',
    localJid: 'x@localhost/r',
    sendJingle: (el) => {
      sent.push(el);
      return Promise.resolve();
    },
    createPeerConnection: () => {
      const pc = new FakePeerConnection();
      pcs.push(pc);
      return pc as unknown as RTCPeerConnection;
    },
    onRemoteTrack: (t) => added.push(t),
    onRemoteTrackRemoved: (t) => removed.push(t),
    onIceState: () => undefined,
    onFailed: (e) => failures.push(e),
  };
  const audio: FakeTrack = { kind: 'audio', id: 'mic' };
  const video: FakeTrack = { kind: 'video', id: 'cam', getSettings: () => ({ height: 720 }) };
  const stream = {
    getAudioTracks: () => [audio],
    getVideoTracks: () => [video],
  } as unknown as MediaStream;
  const offer = parseJingle(child(parseXml(fixture('session-initiate.xml')), 'jingle', NS_JINGLE));
  const session = new JingleSession(host, offer, stream);
  const pc = () => {
    const p = pcs[0];
    if (!p) throw new Error('no pc');
    return p;
  };
  return { session, sent, added, removed, failures, pc, video };
}

const fromFixture = (name: string): JingleMessage => parseJingle(parseXml(fixture(name)));

describe('JingleSession', () => {
  it('answers the session-initiate with a session-accept the focus accepts', async () => {
    const { session, sent, added, failures, pc } = setup();
    await session.start();
    expect(failures).toEqual([]);
    expect(sent).toHaveLength(1);
    const accept = sent[0];
    if (!accept) throw new Error('nothing sent');
    const view = focusParse(accept, 'a1b2c3d4');
    expect(view.action).toBe('session-accept');
    expect(view.sid).toBe('s7f3k2');
    expect(view.transport?.ufrag).toBe('loc0');
    expect(view.transport?.candidates.map((c) => c.port)).toEqual([40001]);
    // simulcast: three video layers, each with its RTX partner, one name
    expect(view.sources.map((s) => [s.kind, s.name])).toEqual([
      ['audio', 'a1b2c3d4-a0'],
      ...Array.from({ length: 6 }, () => ['video', 'a1b2c3d4-v0']),
    ]);
    const sim = view.groups.filter((g) => g.semantics === 'SIM');
    expect(sim).toHaveLength(1);
    expect(sim[0]?.ssrcs).toHaveLength(3);
    const fids = view.groups.filter((g) => g.semantics === 'FID');
    expect(fids.map((g) => g.ssrcs[0]).sort()).toEqual([...(sim[0]?.ssrcs ?? [])].sort());
    expect(accept.attrs.initiator).toBe('focus.localhost/focus');
    expect(accept.attrs.responder).toBe('x@localhost/r');

    expect(added.map((t) => [t.mid, t.endpointId, t.sourceName, t.kind, t.track.id])).toEqual([
      ['audio-1', 'b0b0b0b0', 'b0b0b0b0-a0', 'audio', 'remote-2'],
      ['audio-2', 'ca401ca4', 'ca401ca4-a0', 'audio', 'remote-3'],
      ['video-1', 'b0b0b0b0', 'b0b0b0b0-v0', 'video', 'remote-4'],
      ['video-2', 'ca401ca4', 'ca401ca4-v0', 'video', 'remote-5'],
    ]);
    expect(added[2]?.videoType).toBe('camera');
    const [audioT, videoT] = pc().getTransceivers();
    expect([audioT?.sender.track?.id, audioT?.direction]).toEqual(['mic', 'sendonly']);
    expect([videoT?.sender.track?.id, videoT?.direction]).toEqual(['cam', 'sendonly']);
    expect(session.websocketUrl).toContain('/colibri-ws/conclave/room1/a1b2c3d4');
  });

  it('follows source-add and source-remove without signalling anything back', async () => {
    const { session, sent, added, removed, pc } = setup();
    await session.start();
    sent.length = 0;
    added.length = 0;
    await session.sourceAdd(fromFixture('source-add.xml'));
    expect(added.map((t) => [t.mid, t.endpointId])).toEqual([
      ['audio-3', 'da7ed00d'],
      ['video-3', 'da7ed00d'],
    ]);
    await session.sourceRemove(fromFixture('source-remove.xml'));
    expect(removed.map((t) => [t.mid, t.endpointId])).toEqual([
      ['audio-1', 'b0b0b0b0'],
      ['video-1', 'b0b0b0b0'],
    ]);
    expect(sent).toEqual([]);
    expect(session.remoteTracks.map((t) => t.mid).sort()).toEqual(['audio-2', 'audio-3', 'video-2', 'video-3']);
    expect(pc().remoteOffers).toHaveLength(3);
  });

  it('signals local sources that stop and start', async () => {
    const { session, sent, video } = setup();
    await session.start();
    sent.length = 0;
    await session.setLocalTrack('video', null);
    expect(sent.map((j) => j.attrs.action)).toEqual(['source-remove']);
    const rm = sent[0];
    if (!rm) throw new Error('nothing sent');
    const rmView = focusParse(rm, 'a1b2c3d4');
    expect(rmView.sources.map((s) => s.kind)).toEqual(Array.from({ length: 6 }, () => 'video'));
    expect(rmView.groups.map((g) => g.semantics).sort()).toEqual(['FID', 'FID', 'FID', 'SIM']);
    sent.length = 0;
    await session.setLocalTrack('video', video as unknown as MediaStreamTrack);
    expect(sent.map((j) => j.attrs.action)).toEqual(['source-add']);
    const add = sent[0];
    if (!add) throw new Error('nothing sent');
    const addView = focusParse(add, 'a1b2c3d4');
    expect(addView.sources).toHaveLength(6);
    expect(addView.groups.map((g) => g.semantics).sort()).toEqual(['FID', 'FID', 'FID', 'SIM']);
  });

  it('restarts ICE on a transport with new credentials, adds candidates otherwise', async () => {
    const { session, sent, pc } = setup();
    await session.start();
    sent.length = 0;
    const ti = (ufrag: string, gen?: number): JingleMessage =>
      parseJingle(
        parseXml(`<jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='s7f3k2'><content name='audio'>
          <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='${ufrag}' pwd='p${ufrag}'${gen !== undefined ? ` ice-generation='${String(gen)}'` : ''}>
          <candidate component='1' foundation='9' generation='0' id='x' ip='127.0.0.1' port='10009' priority='100' protocol='udp' type='host'/>
          </transport></content></jingle>`),
      );
    await session.transportInfo(ti('bRdg'));
    expect(pc().candidates).toEqual([
      { candidate: 'candidate:9 1 udp 100 127.0.0.1 10009 typ host generation 0', sdpMid: 'audio', sdpMLineIndex: 0 },
    ]);
    expect(sent).toEqual([]);

    await session.transportInfo(ti('fresh', 1));
    const lastOffer = parseSdp(pc().remoteOffers[pc().remoteOffers.length - 1] ?? '');
    expect(lastOffer.media[0]?.iceUfrag).toBe('fresh');
    expect(sent.map((j) => j.attrs.action)).toEqual(['transport-info']);
    const j = sent[0];
    if (!j) throw new Error('nothing sent');
    expect(focusParse(j, 'a1b2c3d4').transport?.ufrag).not.toBe('loc0');
    expect(j.getChild('content')?.getChild('transport')?.attrs['ice-generation']).toBe('1');
  });

  it('asks for a new session in place of this one as lib-jitsi-meet does when ICE fails', async () => {
    const { session } = setup();
    await session.start();
    const j = session.restartRequest();
    expect(j.attrs.action).toBe('session-terminate');
    expect(j.attrs.sid).toBe(session.sid);
    expect(j.getChild('reason')?.getChild('connectivity-error')).toBeDefined();
    const b = j.getChild('bridge-session', 'http://jitsi.org/protocol/focus');
    expect(b?.attrs.restart).toBe('true');
    expect(b?.attrs.id).toBe(parseJingle(child(parseXml(fixture('session-initiate.xml')), 'jingle', NS_JINGLE)).bridgeSessionId);
  });

  it('asks for an in-place ICE restart with session-info', async () => {
    const { session, sent } = setup();
    await session.start();
    sent.length = 0;
    await session.requestIceRestart();
    const j = sent[0];
    expect(j?.attrs.action).toBe('session-info');
    const b = j?.getChild('bridge-session', 'http://jitsi.org/protocol/focus');
    expect([b?.attrs['ice-restart'], b?.attrs.id]).toEqual(['true', 'bs-1']);
  });

  it('sizes the simulcast layers and pauses those the bridge says nobody wants', async () => {
    const { session, pc } = setup();
    await session.start();
    const sender = () => {
      const t = pc().getTransceivers().find((x) => x.mid === 'video');
      if (!t) throw new Error('no video transceiver');
      return t.sender;
    };
    expect(sender().params.encodings.map((e) => [e.scaleResolutionDownBy, e.active])).toEqual([
      [4, true],
      [2, true],
      [1, true],
    ]);
    await session.applySenderMaxHeight('a1b2c3d4-v0', 180);
    expect(sender().params.encodings.map((e) => e.active)).toEqual([true, false, false]);
    await session.applySenderMaxHeight('someone-else-v0', 0);
    expect(sender().params.encodings.map((e) => e.active)).toEqual([true, false, false]);
    await session.applySenderMaxHeight('a1b2c3d4-v0', 0);
    expect(sender().params.encodings.map((e) => e.active)).toEqual([false, false, false]);
  });

  it('reports every remote track gone when closed', async () => {
    const { session, removed, pc } = setup();
    await session.start();
    session.close();
    expect(removed).toHaveLength(4);
    expect(pc().closed).toBe(true);
    await session.sourceAdd(fromFixture('source-add.xml'));
    expect(pc().remoteOffers).toHaveLength(1);
  });

  it('reports a failed negotiation and keeps the queue going', async () => {
    const { session, failures, pc } = setup();
    await session.start();
    pc().failNext = true;
    await expect(session.sourceAdd(fromFixture('source-add.xml'))).rejects.toThrow(/refused/);
    expect(failures).toHaveLength(1);
    await session.sourceRemove(fromFixture('source-remove.xml'));
    expect(failures).toHaveLength(1);
  });
});
