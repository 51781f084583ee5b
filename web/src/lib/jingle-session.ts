// One Jingle session with the focus, driving one RTCPeerConnection: the
// focus offers (session-initiate, source-add/remove, transport-info), this
// browser always answers. Every step runs in one queue, in arrival order.
import { xml, type Element } from '@xmpp/client';
import {
  KINDS,
  LOCAL_MID,
  RemoteDescription,
  bundleTransport,
  diffLocalSources,
  parseLocalAnswer,
  prepareLocalAnswer,
  sessionAccept,
  sessionTerminate,
  sourceChange,
  transportInfo,
  type Candidate,
  type JingleAddressing,
  type JingleMessage,
  type LocalMedia,
  type MediaKind,
  type SourceChange,
} from './jingle-sdp';
import { NS_FOCUS, NS_JINGLE } from './ns';
import { simulcastEncodings, svcEncodings } from './simulcast';

export interface RemoteTrack {
  track: MediaStreamTrack;
  /** The sender's endpoint id. */
  endpointId: string;
  /** Its source name, e.g. `b0b0b0b0-v0`. */
  sourceName: string;
  kind: MediaKind;
  videoType?: string;
  /** The m-section carrying it. */
  mid: string;
}

export interface SessionHost {
  readonly endpointId: string;
  /** Our occupant JID (`room@muc/<endpoint>`), the owner of our sources. */
  readonly ownerJid: string;
  /** Our full JID, the Jingle responder. */
  readonly localJid: string;
  /** The video codec to send: VP8 as simulcast, VP9 or AV1 as SVC. */
  readonly videoCodec?: VideoCodec;
  /** Sends a `<jingle/>` to the focus in an IQ set; rejects on an error reply. */
  sendJingle(el: Element): Promise<void>;
  createPeerConnection(): RTCPeerConnection;
  onRemoteTrack(t: RemoteTrack): void;
  onRemoteTrackRemoved(t: RemoteTrack): void;
  onIceState(state: RTCIceConnectionState): void;
  onFailed(err: unknown): void;
}

export type VideoCodec = 'VP8' | 'VP9' | 'AV1';

const ICE_GATHERING_TIMEOUT_MS = 3000;

function waitForIceGathering(pc: RTCPeerConnection, timeoutMs: number): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

function candidateLine(c: Candidate): string {
  let s = `candidate:${c.foundation} ${String(c.component)} ${c.protocol} ${String(c.priority)} ${c.ip} ${String(c.port)} typ ${c.type}`;
  if (c.relAddr !== undefined && c.relPort !== undefined) s += ` raddr ${c.relAddr} rport ${String(c.relPort)}`;
  if (c.tcpType !== undefined) s += ` tcptype ${c.tcpType}`;
  return `${s} generation ${String(c.generation)}`;
}

export class JingleSession {
  readonly sid: string;
  private pc: RTCPeerConnection | null = null;
  private remote: RemoteDescription | null = null;
  private lastLocal: LocalMedia | null = null;
  private queue: Promise<void> = Promise.resolve();
  private ended = false;
  private readonly tracks = new Map<string, RemoteTrack>();
  private readonly localTracks: Record<MediaKind, MediaStreamTrack | null>;
  /** What the bridge last said receivers want of our camera (none yet: no limit). */
  private senderMaxHeight: number | undefined;

  constructor(
    private readonly host: SessionHost,
    private readonly offer: JingleMessage,
    private localStream: MediaStream | null,
  ) {
    this.sid = offer.sid;
    this.localTracks = {
      audio: localStream?.getAudioTracks()[0] ?? null,
      video: localStream?.getVideoTracks()[0] ?? null,
    };
  }

  /** The bridge channel's URL from the current transport. */
  get websocketUrl(): string | undefined {
    return this.remote?.transport.websocketUrl ?? bundleTransport(this.offer)?.websocketUrl;
  }

  get peerConnection(): RTCPeerConnection | null {
    return this.pc;
  }

  get remoteTracks(): RemoteTrack[] {
    return [...this.tracks.values()];
  }

  get isEnded(): boolean {
    return this.ended;
  }

  private get addressing(): JingleAddressing {
    const a: JingleAddressing = { sid: this.sid, responder: this.host.localJid, owner: this.host.ownerJid };
    if (this.offer.initiator !== undefined) a.initiator = this.offer.initiator;
    return a;
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    const run = this.queue.then(async () => {
      if (this.ended) return;
      try {
        await step();
      } catch (err) {
        if (this.alive()) this.host.onFailed(err);
        throw err;
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Answers the session-initiate: session-accept once ICE has gathered. */
  start(): Promise<void> {
    return this.enqueue(async () => {
      const { description, change } = RemoteDescription.fromSessionInitiate(this.offer);
      this.remote = description;
      const pc = this.host.createPeerConnection();
      this.pc = pc;
      pc.addEventListener('iceconnectionstatechange', () => {
        this.host.onIceState(pc.iceConnectionState);
      });
      await this.negotiate(change, true);
    });
  }

  sourceAdd(msg: JingleMessage): Promise<void> {
    return this.enqueue(async () => {
      const remote = this.requireRemote();
      await this.negotiate(remote.addSources(msg.contents), false);
    });
  }

  sourceRemove(msg: JingleMessage): Promise<void> {
    return this.enqueue(async () => {
      const remote = this.requireRemote();
      await this.negotiate(remote.removeSources(msg.contents), false);
    });
  }

  /** New credentials restart ICE (and we answer with ours); else candidates are added. */
  transportInfo(msg: JingleMessage): Promise<void> {
    return this.enqueue(async () => {
      const remote = this.requireRemote();
      const t = bundleTransport(msg);
      if (!t) return;
      if (remote.updateTransport(t)) {
        await this.negotiate({ added: [], removed: [] }, false, t.iceGeneration ?? 0);
        return;
      }
      const pc = this.pc;
      if (!pc) return;
      for (const c of t.candidates) {
        await pc.addIceCandidate({ candidate: candidateLine(c), sdpMid: LOCAL_MID.audio, sdpMLineIndex: 0 });
      }
    });
  }

  /** Switches (or, with null, stops) what we send of one kind; signals the change. */
  setLocalTrack(kind: MediaKind, track: MediaStreamTrack | null, stream?: MediaStream): Promise<void> {
    this.localTracks[kind] = track;
    if (stream) this.localStream = stream;
    return this.enqueue(() => this.negotiate({ added: [], removed: [] }, false));
  }

  /**
   * Sends `track` in place of the one before it, under the same source and
   * SSRCs, without renegotiating: a camera turned back on after its device
   * was released.
   */
  replaceLocalTrack(kind: MediaKind, track: MediaStreamTrack, stream: MediaStream): Promise<void> {
    this.localTracks[kind] = track;
    this.localStream = stream;
    return this.enqueue(async () => {
      const t = this.pc?.getTransceivers().find((x) => x.mid === LOCAL_MID[kind]);
      if (!t) return;
      await t.sender.replaceTrack(track);
      if (typeof t.sender.setStreams === 'function') t.sender.setStreams(stream);
      if (kind === 'video') await this.configureEncodings();
    });
  }

  /** Lowers (or stops, at 0) what we send for one of our video sources. */
  async applySenderMaxHeight(sourceName: string, maxHeight: number): Promise<void> {
    if (sourceName !== `${this.host.endpointId}-v0`) return;
    this.senderMaxHeight = maxHeight;
    await this.configureEncodings();
  }

  private get svc(): boolean {
    return this.host.videoCodec === 'VP9' || this.host.videoCodec === 'AV1';
  }

  /** Puts the chosen video codec first in our answer, so that we send it. */
  private preferCodec(pc: RTCPeerConnection): void {
    const want = this.host.videoCodec;
    if (want === undefined || want === 'VP8' || typeof RTCRtpReceiver === 'undefined') return;
    const t = pc.getTransceivers().find((x) => x.mid === LOCAL_MID.video);
    const caps = RTCRtpReceiver.getCapabilities('video');
    if (!t || !caps || typeof t.setCodecPreferences !== 'function') return;
    const name = `video/${want}`.toLowerCase();
    const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === name);
    const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== name);
    t.setCodecPreferences([...first, ...rest]);
  }

  /** Sizes, bitrates and pauses of our video layers (see `simulcast`). */
  private async configureEncodings(): Promise<void> {
    const t = this.pc?.getTransceivers().find((x) => x.mid === LOCAL_MID.video);
    const track = this.localTracks.video;
    if (!t || !track) return;
    const params = t.sender.getParameters();
    if (params.encodings.length === 0) return;
    const height = track.getSettings().height ?? 720;
    if (this.svc) {
      // The scalability mode is checked against every negotiated codec
      // unless the encoding names the one it is for.
      const name = `video/${this.host.videoCodec ?? ''}`.toLowerCase();
      const codec = params.codecs.find((c) => c.mimeType.toLowerCase() === name);
      params.encodings = svcEncodings(params.encodings, height, this.senderMaxHeight).map((e, i) =>
        i === 0 && codec ? { ...e, codec } : e,
      );
    } else {
      params.encodings = simulcastEncodings(params.encodings, height, this.senderMaxHeight);
    }
    await t.sender.setParameters(params);
  }

  /**
   * Asks for an in-place ICE restart (`<bridge-session ice-restart/>`):
   * the bridge answers with a transport-info carrying new credentials and
   * an `ice-generation`, applied by `transportInfo`, while media goes on
   * over the old pair. Rejects if the focus refuses.
   */
  async requestIceRestart(): Promise<void> {
    if (this.ended) throw new Error('the session has ended');
    const j = xml(
      'jingle',
      { xmlns: NS_JINGLE, action: 'session-info', initiator: this.offer.initiator, sid: this.sid },
      xml('bridge-session', { xmlns: NS_FOCUS, id: this.remote?.bridgeSessionId, 'ice-restart': 'true' }),
    );
    await this.host.sendJingle(j);
  }

  /**
   * The session-terminate that asks the focus for a new session in place of
   * this one (`<bridge-session restart/>`): what lib-jitsi-meet sends, by
   * default, when ICE to the bridge has failed.
   */
  restartRequest(): Element {
    const j = sessionTerminate(this.addressing, 'connectivity-error', 'ICE FAILED');
    j.append(xml('bridge-session', { xmlns: NS_FOCUS, id: this.remote?.bridgeSessionId, restart: 'true' }));
    return j;
  }

  /** Ends locally: closes the connection, reports every remote track gone. */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    for (const t of this.tracks.values()) this.host.onRemoteTrackRemoved(t);
    this.tracks.clear();
    this.pc?.close();
    this.pc = null;
  }

  /** Waits for every queued step. */
  settled(): Promise<void> {
    return this.queue;
  }

  private alive(): boolean {
    return !this.ended;
  }

  private requireRemote(): RemoteDescription {
    if (!this.remote) throw new Error('no session-initiate yet');
    return this.remote;
  }

  private async attachLocal(pc: RTCPeerConnection): Promise<void> {
    for (const kind of KINDS) {
      const t = pc.getTransceivers().find((x) => x.mid === LOCAL_MID[kind]);
      if (!t) continue;
      const track = this.localTracks[kind];
      if (t.sender.track !== track) await t.sender.replaceTrack(track);
      if (track && this.localStream && typeof t.sender.setStreams === 'function') {
        t.sender.setStreams(this.localStream);
      }
      t.direction = track ? 'sendonly' : 'inactive';
    }
  }

  private emitTrackChanges(pc: RTCPeerConnection, change: SourceChange): void {
    for (const { mid } of change.removed) {
      const t = this.tracks.get(mid);
      if (t) {
        this.tracks.delete(mid);
        this.host.onRemoteTrackRemoved(t);
      }
    }
    for (const { source, mid } of change.added) {
      const transceiver = pc.getTransceivers().find((x) => x.mid === mid);
      if (!transceiver) continue;
      const t: RemoteTrack = {
        track: transceiver.receiver.track,
        endpointId: source.owner,
        sourceName: source.name,
        kind: source.kind,
        mid,
      };
      if (source.videoType !== undefined) t.videoType = source.videoType;
      this.tracks.set(mid, t);
      this.host.onRemoteTrack(t);
    }
  }

  /**
   * One offer/answer round from the remote model, then tells the focus
   * what changed on our side: session-accept the first time; afterwards
   * source-remove/source-add for local SSRCs that changed and, after an ICE
   * restart, transport-info with our new credentials.
   */
  private async negotiate(change: SourceChange, initial: boolean, iceGeneration?: number): Promise<void> {
    const pc = this.pc;
    const remote = this.requireRemote();
    if (!pc) throw new Error('no peer connection');
    await pc.setRemoteDescription({ type: 'offer', sdp: remote.toSdp() });
    await this.attachLocal(pc);
    this.preferCodec(pc);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription({ type: 'answer', sdp: prepareLocalAnswer(answer.sdp ?? '', !this.svc) });
    if (this.ended) return;
    await this.configureEncodings();
    this.emitTrackChanges(pc, change);

    const readLocal = () => parseLocalAnswer(pc.localDescription?.sdp ?? '', this.host.endpointId);
    if (initial || !this.lastLocal) {
      await waitForIceGathering(pc, ICE_GATHERING_TIMEOUT_MS);
      const local = readLocal();
      this.lastLocal = local;
      await this.host.sendJingle(sessionAccept(local, this.addressing));
      return;
    }
    let local = readLocal();
    if (iceGeneration !== undefined || local.transport.ufrag !== this.lastLocal.transport.ufrag) {
      await waitForIceGathering(pc, ICE_GATHERING_TIMEOUT_MS);
      local = readLocal();
      await this.host.sendJingle(transportInfo(local, this.addressing, iceGeneration || undefined));
    }
    const diff = diffLocalSources(this.lastLocal.contents, local.contents);
    this.lastLocal = local;
    const removed = sourceChange('source-remove', diff.removed, this.addressing);
    if (removed) await this.host.sendJingle(removed);
    const added = sourceChange('source-add', diff.added, this.addressing);
    if (added) await this.host.sendJingle(added);
  }
}
