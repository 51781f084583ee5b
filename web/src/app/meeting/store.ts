// The meeting as the page shows it: one object of signals fed by the
// library's Conference events, so that components read state and never
// listen to the protocol. It also owns what outlives one Conference: the
// local media, the chat log, and the rejoin after a dropped connection.
import { batch, computed, signal } from '@preact/signals';
import {
  Conference,
  UploadError,
  type Credentials,
  type FileRef,
  type Knocker,
  type MeetConfig,
  type Participant,
  type ReceiverVideoConstraints,
  type VideoCodec,
} from '../../lib';
import { uploadMessage } from '../files';
import { t } from '../i18n';
import { classify, stopStream } from '../media';

export type VideoType = 'camera' | 'desktop';
export type Quality = 'good' | 'fair' | 'poor';

export interface PeerView {
  id: string;
  name: string;
  local: boolean;
  audioMuted: boolean;
  videoMuted: boolean;
  videoType: VideoType;
  /** When the hand went up (ms since 1970), or null. */
  raisedHand: number | null;
  moderator: boolean;
  video: MediaStreamTrack | null;
  audio: MediaStreamTrack | null;
  quality: Quality | null;
}

export interface ChatEntry {
  id: string;
  /** Sender's endpoint id ('' for us). */
  from: string;
  fromName: string;
  text: string;
  mine: boolean;
  /** For a private message: the other side's endpoint id. */
  privateWith?: string;
  privateWithName?: string;
  at: Date;
  file?: FileRef;
  /** Our file being sent: the fraction uploaded (1 when shared). */
  progress?: number;
  /** Why our file could not be sent. */
  error?: string;
  /** From the room's history, said before we came. */
  history?: boolean;
}

export interface Reaction {
  key: number;
  from: string;
  emoji: string;
}

export type Phase = 'joining' | 'joined' | 'reconnecting' | 'left' | 'kicked' | 'failed' | 'ended';

/** The reactions offered, by the name sent on the wire (Jitsi's names). */
export const REACTIONS: Record<string, string> = {
  like: '👍',
  love: '❤️',
  laugh: '😂',
  surprised: '😮',
  clap: '👏',
  celebrate: '🎉',
};

/** Endpoint messages this client sends over the bridge channel. */
const MSG_REACTION = 'reaction';
const MSG_QUALITY = 'conclave-quality';

const REJOIN_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
const REACTION_SHOW_MS = 4000;
const STATS_INTERVAL_MS = 2000;
const MAX_CHAT_ENTRIES = 2000;
/** The longest message the meeting's chat sends, typed or from an embedding site. */
export const MAX_CHAT_MESSAGE = 4000;
const QUALITY_REPEAT_POLLS = 5;

export interface MeetingOptions {
  config: MeetConfig;
  room: string;
  displayName: string;
  stream: MediaStream | null;
  audioMuted: boolean;
  videoMuted: boolean;
  videoCodec?: VideoCodec;
  /** A signed-in user's account, to join as (see ../session.ts). */
  credentials?: Credentials;
}

function randomKey(): number {
  return Math.floor(Math.random() * 2 ** 31);
}

function timeOf(p: Participant): number | null {
  const raw = p.properties.raisedHand;
  if (raw === undefined || raw === '' || raw === 'false') return null;
  const n = Number(raw);
  return Number.isFinite(n) && n > 0 ? n : Date.now();
}

function isQuality(v: unknown): v is Quality {
  return v === 'good' || v === 'fair' || v === 'poor';
}

export class MeetingStore {
  readonly phase = signal<Phase>('joining');
  readonly failure = signal<string>('');
  readonly peers = signal<ReadonlyMap<string, PeerView>>(new Map());
  /** Remote endpoint ids in the order tiles show them. */
  readonly order = signal<readonly string[]>([]);
  readonly dominant = signal<string | null>(null);
  readonly pinned = signal<string | null>(null);
  readonly layout = signal<'tile' | 'stage'>('tile');
  readonly chat = signal<readonly ChatEntry[]>([]);
  readonly unread = signal(0);
  readonly panel = signal<'chat' | 'participants' | null>(null);
  /** Whom the chat box writes to: '' for everyone, else an endpoint id. */
  readonly chatTo = signal('');
  readonly reactions = signal<readonly Reaction[]>([]);
  readonly audioMuted = signal(false);
  readonly videoMuted = signal(false);
  /** Why a device could not be opened again (the camera, turned back on). */
  readonly mediaError = signal('');
  readonly sharing = signal(false);
  readonly handRaised = signal(false);
  readonly quality = signal<Quality | null>(null);
  readonly localStream = signal<MediaStream | null>(null);
  readonly displayName = signal('');
  readonly localId = signal('');
  readonly isModerator = signal(false);
  readonly locked = signal(false);
  readonly lobbyOn = signal(false);
  readonly knockers = signal<readonly Knocker[]>([]);
  /** Something to tell the user once (muted by a moderator, ...); '' for nothing. */
  readonly notice = signal('');

  /** Who is on stage in stage view: pinned, else a screen, else the speaker. */
  readonly stageId = computed<string | null>(() => {
    const peers = this.peers.value;
    const pinned = this.pinned.value;
    if (pinned !== null && peers.has(pinned)) return pinned;
    for (const id of this.order.value) if (peers.get(id)?.videoType === 'desktop') return id;
    const d = this.dominant.value;
    if (d !== null && peers.has(d)) return d;
    return this.order.value[0] ?? null;
  });

  conference: Conference;
  private readonly opts: MeetingOptions;
  private camera: MediaStream | null;
  private screen: MediaStream | null = null;
  private seenChat = new Set<string>();
  private statsTimer: ReturnType<typeof setInterval> | undefined;
  private lastStats = { lost: 0, received: 0 };
  private polls = 0;
  private password = '';
  private stopped = false;
  private constraintsKey = '';

  /** The meeting's name, as in its link. */
  get room(): string {
    return this.opts.room;
  }

  constructor(opts: MeetingOptions) {
    this.opts = opts;
    this.camera = opts.stream;
    this.audioMuted.value = opts.audioMuted;
    this.videoMuted.value = opts.videoMuted;
    this.displayName.value = opts.displayName;
    this.localStream.value = opts.stream;
    this.conference = new Conference();
  }

  /**
   * Joins; resolves once in the room, rejects with the reason it could not
   * (a `JoinError` for a locked meeting or its lobby: then `retryJoin` or
   * `knock`).
   */
  async start(): Promise<void> {
    await this.joinOnce(this.conference);
  }

  /** A locked meeting: in with its password, or a JoinError again. */
  async retryJoin(password: string): Promise<void> {
    await this.conference.retryJoin(password);
    this.password = password;
    await this.afterJoin(this.conference);
  }

  /** Behind the lobby: resolves once a moderator lets us in, rejects if denied. */
  async knock(): Promise<void> {
    await this.conference.knock();
    await this.afterJoin(this.conference);
  }

  private async joinOnce(conference: Conference): Promise<void> {
    this.wire(conference);
    this.phase.value = 'joining';
    await conference.join({
      password: this.password,
      config: this.opts.config,
      room: this.opts.room,
      displayName: this.displayName.value,
      localStream: this.localStream.value,
      audioMuted: this.audioMuted.value,
      videoMuted: this.videoMuted.value,
      receiverConstraints: { lastN: -1, defaultConstraints: { maxHeight: 0 } },
      ...(this.opts.videoCodec !== undefined ? { videoCodec: this.opts.videoCodec } : {}),
      ...(this.opts.credentials !== undefined ? { credentials: this.opts.credentials } : {}),
    });
    await this.afterJoin(conference);
  }

  private async afterJoin(conference: Conference): Promise<void> {
    if (this.screen) await conference.setLocalStream(this.localStream.value, 'desktop');
    if (this.handRaised.value) conference.setLocalProperty('raisedHand', String(Date.now()));
    batch(() => {
      this.localId.value = conference.endpointId;
      this.isModerator.value = conference.isModerator;
      this.phase.value = 'joined';
    });
    this.statsTimer ??= setInterval(() => void this.pollStats(), STATS_INTERVAL_MS);
    void conference.refreshRoomState().catch(() => undefined);
  }

  private wire(c: Conference): void {
    const mine = () => c === this.conference;
    c.on('participant-joined', (p) => mine() && this.upsert(p, true));
    c.on('participant-updated', (p) => mine() && this.upsert(p, false));
    c.on('participant-left', (p) => mine() && this.removePeer(p.endpointId));
    c.on('remote-track', (t) => {
      if (!mine()) return;
      this.patch(t.endpointId, t.track.kind === 'audio' ? { audio: t.track } : { video: t.track });
    });
    c.on('remote-track-removed', (t) => {
      if (!mine()) return;
      const p = this.peers.value.get(t.endpointId);
      if (p?.audio === t.track) this.patch(t.endpointId, { audio: null });
      if (p?.video === t.track) this.patch(t.endpointId, { video: null });
    });
    c.on('dominant-speaker', (d) => {
      if (!mine() || d.silence) return;
      this.dominant.value = d.endpointId;
    });
    c.on('chat', (m) => {
      if (!mine()) return;
      this.addChat({
        id: m.id ?? `${m.from}-${String(randomKey())}`,
        from: m.from,
        fromName: m.displayName ?? m.from,
        text: m.text,
        mine: m.mine,
        ...(m.delayed ? { history: true } : {}),
        ...(m.file !== undefined ? { file: m.file } : {}),
        ...(m.private ? { privateWith: m.from, privateWithName: m.displayName ?? m.from } : {}),
        at: m.stamp !== undefined ? new Date(m.stamp) : new Date(),
      });
    });
    c.on('endpoint-message', (m) => mine() && this.onEndpointMessage(m.from, m.payload));
    c.on('role-changed', (r) => mine() && (this.isModerator.value = r.role === 'moderator'));
    c.on('room-state', (r) => {
      if (!mine()) return;
      batch(() => {
        this.locked.value = r.locked;
        this.lobbyOn.value = r.lobby;
        if (!r.lobby) this.knockers.value = [];
      });
    });
    c.on('lobby-changed', (l) => mine() && (this.knockers.value = l.knockers));
    c.on('muted-by-moderator', (m) => {
      if (!mine()) return;
      batch(() => {
        if (m.kind === 'audio') this.audioMuted.value = true;
        else this.videoMuted.value = true;
        this.notice.value = m.kind === 'audio' ? t('moderation.mutedYou') : t('moderation.stoppedYourCamera');
      });
    });
    c.on('connection-interrupted', () => {
      if (mine() && this.phase.value === 'joined') this.phase.value = 'reconnecting';
    });
    c.on('connection-restored', () => {
      if (mine() && this.phase.value === 'reconnecting') this.phase.value = 'joined';
    });
    c.on('kicked', (k) => {
      if (!mine()) return;
      this.failure.value = k.reason ?? '';
      this.phase.value = 'kicked';
    });
    c.on('conference-failed', (f) => {
      if (!mine() || this.phase.value !== 'joined') return;
      if (f.reason === 'room-destroyed') this.phase.value = 'ended';
    });
    c.on('left', (l) => {
      if (!mine() || this.stopped) return;
      if (l.reason === 'connection-lost') void this.rejoin();
      else if (this.phase.value === 'joined') this.phase.value = 'left';
    });
  }

  /** After a dropped connection: a new Conference with the same media and state. */
  private async rejoin(): Promise<void> {
    batch(() => {
      this.phase.value = 'reconnecting';
      this.peers.value = new Map();
      this.order.value = [];
      this.dominant.value = null;
    });
    for (let attempt = 0; !this.stopped; attempt++) {
      const delay = REJOIN_DELAYS_MS[Math.min(attempt, REJOIN_DELAYS_MS.length - 1)] ?? 8000;
      await new Promise((r) => setTimeout(r, delay));
      if (this.isStopped()) return;
      const c = new Conference();
      this.conference = c;
      try {
        await this.joinOnce(c);
        this.constraintsKey = '';
        return;
      } catch {
        this.phase.value = 'reconnecting';
      }
    }
  }

  /** Read through a call: `leave()` may have run while a rejoin awaited. */
  private isStopped(): boolean {
    return this.stopped;
  }

  private upsert(p: Participant, joined: boolean): void {
    const video = Object.entries(p.sources).find(([name]) => name.endsWith('-v0'))?.[1];
    const audio = Object.entries(p.sources).find(([name]) => name.endsWith('-a0'))?.[1];
    const prev = this.peers.value.get(p.endpointId);
    const view: PeerView = {
      id: p.endpointId,
      name: p.displayName !== undefined && p.displayName !== '' ? p.displayName : '',
      local: false,
      audioMuted: audio?.muted ?? true,
      videoMuted: video?.muted ?? true,
      videoType: video?.videoType === 'desktop' ? 'desktop' : 'camera',
      raisedHand: timeOf(p),
      moderator: p.role === 'moderator',
      video: prev?.video ?? null,
      audio: prev?.audio ?? null,
      quality: prev?.quality ?? null,
    };
    const m = new Map(this.peers.value);
    m.set(p.endpointId, view);
    batch(() => {
      this.peers.value = m;
      if (joined && !this.order.value.includes(p.endpointId)) this.order.value = [...this.order.value, p.endpointId];
      // A screen share goes on everyone's stage (unless they pinned someone).
      if (view.videoType === 'desktop' && prev?.videoType !== 'desktop' && this.pinned.value === null) {
        this.layout.value = 'stage';
      }
    });
  }

  private patch(id: string, part: Partial<PeerView>): void {
    const prev = this.peers.value.get(id);
    const m = new Map(this.peers.value);
    if (prev) {
      m.set(id, { ...prev, ...part });
    } else {
      // A track can come before the presence that names its owner.
      m.set(id, {
        id,
        name: '',
        local: false,
        audioMuted: false,
        videoMuted: false,
        videoType: 'camera',
        raisedHand: null,
        moderator: false,
        video: null,
        audio: null,
        quality: null,
        ...part,
      });
    }
    this.peers.value = m;
  }

  private removePeer(id: string): void {
    const m = new Map(this.peers.value);
    m.delete(id);
    batch(() => {
      this.peers.value = m;
      this.order.value = this.order.value.filter((x) => x !== id);
      if (this.pinned.value === id) this.pinned.value = null;
      if (this.dominant.value === id) this.dominant.value = null;
    });
  }

  private onEndpointMessage(from: string, payload: unknown): void {
    if (typeof payload !== 'object' || payload === null) return;
    const p = payload as Record<string, unknown>;
    if (p.name === MSG_REACTION && typeof p.reaction === 'string') {
      const emoji = REACTIONS[p.reaction];
      if (emoji !== undefined) this.showReaction(from, emoji);
    } else if (p.name === MSG_QUALITY && isQuality(p.quality) && this.peers.value.has(from)) {
      this.patch(from, { quality: p.quality });
    }
  }

  private showReaction(from: string, emoji: string): void {
    const r: Reaction = { key: randomKey(), from, emoji };
    this.reactions.value = [...this.reactions.value.slice(-20), r];
    setTimeout(() => {
      this.reactions.value = this.reactions.value.filter((x) => x !== r);
    }, REACTION_SHOW_MS);
  }

  private addChat(e: ChatEntry): void {
    // A rejoin replays the room's history: each message shows once.
    if (this.seenChat.has(e.id)) return;
    this.seenChat.add(e.id);
    batch(() => {
      this.chat.value = [...this.chat.value.slice(-(MAX_CHAT_ENTRIES - 1)), e];
      if (!e.mine && this.panel.value !== 'chat') this.unread.value += 1;
    });
  }

  // ------------------------------------------------------------ actions

  nameOf(id: string): string {
    if (id === this.localId.value || id === '') return this.displayName.value;
    return this.peers.value.get(id)?.name ?? '';
  }

  async sendChat(text: string, to?: string): Promise<void> {
    const id = await this.conference.sendChat(text, to);
    this.addChat({
      id,
      from: '',
      fromName: this.displayName.value,
      text,
      mine: true,
      ...(to !== undefined ? { privateWith: to, privateWithName: this.nameOf(to) } : {}),
      at: new Date(),
    });
  }

  /** Whether we may share files: an account where the server takes files, a guest where it takes theirs. */
  get canShareFiles(): boolean {
    const c = this.opts.config;
    return this.opts.credentials !== undefined ? c.uploads !== false : c.guestUploads === true;
  }

  /** Shares a file in the chat (to everyone, or privately), its entry showing the upload's progress. */
  async sendFile(file: File, to?: string): Promise<void> {
    const key = `upload-${String(randomKey())}`;
    const entry: ChatEntry = {
      id: key,
      from: '',
      fromName: this.displayName.value,
      text: file.name,
      mine: true,
      ...(to !== undefined ? { privateWith: to, privateWithName: this.nameOf(to) } : {}),
      at: new Date(),
      progress: 0,
    };
    this.addChat(entry);
    const update = (p: Partial<ChatEntry>) => {
      this.chat.value = this.chat.value.map((e) => (e.id === key ? { ...e, ...p } : e));
    };
    try {
      const { url, id } = await this.conference.sendFile(file, (progress) => update({ progress }), to);
      // The room echoes it under this id: it shows once.
      this.seenChat.add(id);
      update({ progress: 1, file: { url, name: file.name }, text: url });
    } catch (err) {
      update({ error: err instanceof UploadError ? uploadMessage(err) : t('files.failed') });
    }
  }

  toggleAudio(): void {
    const muted = !this.audioMuted.value;
    this.audioMuted.value = muted;
    this.conference.setAudioMuted(muted);
  }

  /**
   * Turns the camera off and on. Off releases the device (its light goes
   * out, as in Jitsi Meet); on opens it again and sends it under the same
   * source. A screen being shared is only muted.
   */
  async toggleVideo(): Promise<void> {
    const muted = !this.videoMuted.value;
    const cam = this.camera?.getVideoTracks()[0];
    if (!muted && cam?.readyState === 'ended' && !this.sharing.value && this.camera) {
      let fresh: MediaStream;
      try {
        const deviceId = cam.getSettings().deviceId;
        fresh = await navigator.mediaDevices.getUserMedia({ video: deviceId !== undefined && deviceId !== '' ? { deviceId: { exact: deviceId } } : true });
      } catch (err) {
        this.mediaError.value = t(`prejoin.problem.${classify(err)}`, { device: t('prejoin.deviceWord.camera') });
        return;
      }
      const track = fresh.getVideoTracks()[0];
      if (!track) return;
      const stream = new MediaStream([...this.camera.getAudioTracks(), track]);
      this.camera = stream;
      batch(() => {
        this.localStream.value = stream;
        this.videoMuted.value = false;
        this.mediaError.value = '';
      });
      this.conference.setVideoMuted(false);
      await this.conference.replaceLocalTrack('video', stream);
      return;
    }
    this.videoMuted.value = muted;
    this.conference.setVideoMuted(muted);
    if (muted && !this.sharing.value) cam?.stop();
  }

  toggleHand(): void {
    const up = !this.handRaised.value;
    this.handRaised.value = up;
    this.conference.setLocalProperty('raisedHand', up ? String(Date.now()) : null);
  }

  react(name: string): void {
    if (REACTIONS[name] === undefined) return;
    this.conference.sendEndpointMessage('', { name: MSG_REACTION, reaction: name });
    const emoji = REACTIONS[name];
    this.showReaction(this.localId.value, emoji);
  }

  setDisplayName(name: string): void {
    this.displayName.value = name;
    this.conference.setDisplayName(name);
  }

  togglePin(id: string): void {
    const pin = this.pinned.value === id ? null : id;
    batch(() => {
      this.pinned.value = pin;
      if (pin !== null) this.layout.value = 'stage';
    });
  }

  /** Opens the chat, writing privately to `id`. */
  messagePrivately(id: string): void {
    batch(() => {
      this.chatTo.value = id;
      this.panel.value = 'chat';
      this.unread.value = 0;
    });
  }

  openPanel(p: 'chat' | 'participants' | null): void {
    batch(() => {
      this.panel.value = this.panel.value === p ? null : p;
      if (this.panel.value === 'chat') this.unread.value = 0;
    });
  }

  /**
   * Shares a screen in place of the camera (the source's videoType says
   * which, so everyone puts it on stage); ends when the browser's own
   * "Stop sharing" is used too. Throws when the user declines.
   */
  async startScreenShare(): Promise<void> {
    const display = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: false });
    const track = display.getVideoTracks()[0];
    if (!track) return;
    track.addEventListener('ended', () => void this.stopScreenShare());
    this.screen = display;
    const audio = this.camera?.getAudioTracks() ?? [];
    const stream = new MediaStream([...audio, track]);
    batch(() => {
      this.sharing.value = true;
      this.localStream.value = stream;
    });
    if (this.videoMuted.value) await this.toggleVideo();
    await this.conference.setLocalStream(stream, 'desktop');
  }

  async stopScreenShare(): Promise<void> {
    if (!this.screen) return;
    stopStream(this.screen);
    this.screen = null;
    // A camera that was off before the share (its device released) stays off.
    const released = this.camera?.getVideoTracks()[0]?.readyState === 'ended';
    batch(() => {
      this.sharing.value = false;
      this.localStream.value = this.camera;
      if (released) this.videoMuted.value = true;
    });
    if (released) this.conference.setVideoMuted(true);
    await this.conference.setLocalStream(this.camera, 'camera');
  }

  /**
   * Asks the bridge for exactly what is on screen: `visible` ids at the
   * height their tiles are drawn, the rest not at all (Jitsi's
   * ReceiverVideoConstraints with a default of 0).
   */
  setVisible(visible: ReadonlyMap<string, number>, stage: string | null): void {
    const constraints: Record<string, { maxHeight: number }> = {};
    for (const [id, h] of visible) constraints[`${id}-v0`] = { maxHeight: h };
    const c: ReceiverVideoConstraints = {
      lastN: -1,
      defaultConstraints: { maxHeight: 0 },
      constraints,
      onStageSources: stage !== null ? [`${stage}-v0`] : [],
    };
    const key = JSON.stringify(c);
    if (key === this.constraintsKey) return;
    this.constraintsKey = key;
    this.conference.setReceiverConstraints(c);
  }

  /** The dominant speaker, when off the visible page, takes its last place. */
  bringIntoView(id: string, visibleCount: number): void {
    const order = this.order.value;
    const i = order.indexOf(id);
    if (i < visibleCount || visibleCount <= 0) return;
    const next = [...order];
    next.splice(i, 1);
    next.splice(visibleCount - 1, 0, id);
    this.order.value = next;
  }

  // ------------------------------------------------------- moderation

  muteParticipant(id: string): Promise<void> {
    return this.conference.muteParticipant(id, 'audio');
  }

  muteAll(): Promise<void> {
    return this.conference.muteAll('audio');
  }

  kick(id: string): Promise<void> {
    return this.conference.kick(id);
  }

  grantModerator(id: string): Promise<void> {
    return this.conference.grantModerator(id);
  }

  async setPassword(password: string): Promise<void> {
    await this.conference.setPassword(password);
    this.password = password;
    this.locked.value = password !== '';
  }

  async setLobby(on: boolean): Promise<void> {
    await this.conference.setLobby(on);
    this.lobbyOn.value = on;
  }

  admit(id: string): Promise<void> {
    return this.conference.admit(id);
  }

  deny(id: string): Promise<void> {
    return this.conference.deny(id);
  }

  endForAll(): Promise<void> {
    return this.conference.endForAll();
  }

  async leave(): Promise<void> {
    this.stopped = true;
    clearInterval(this.statsTimer);
    await this.conference.leave();
    stopStream(this.screen);
    stopStream(this.camera);
    this.phase.value = 'left';
  }

  /** Our link quality from WebRTC stats: loss and round trip, as Jitsi grades them. */
  private async pollStats(): Promise<void> {
    const pc = this.conference.peerConnection;
    if (!pc || this.phase.value !== 'joined') return;
    let lost = 0;
    let received = 0;
    let rtt = 0;
    const report = await pc.getStats().catch(() => null);
    if (!report) return;
    report.forEach((raw: unknown) => {
      const s = raw as { type?: string; packetsLost?: number; packetsReceived?: number; currentRoundTripTime?: number; state?: string; nominated?: boolean };
      if (s.type === 'inbound-rtp') {
        lost += s.packetsLost ?? 0;
        received += s.packetsReceived ?? 0;
      } else if (s.type === 'candidate-pair' && s.nominated === true && s.state === 'succeeded') {
        rtt = Math.max(rtt, s.currentRoundTripTime ?? 0);
      }
    });
    const dLost = Math.max(0, lost - this.lastStats.lost);
    const dRecv = Math.max(0, received - this.lastStats.received);
    this.lastStats = { lost, received };
    const loss = dLost + dRecv > 0 ? dLost / (dLost + dRecv) : 0;
    const q: Quality = loss > 0.08 || rtt > 0.6 ? 'poor' : loss > 0.02 || rtt > 0.3 ? 'fair' : 'good';
    // Sent on a change, and now and then for those who joined since.
    this.polls += 1;
    if (q !== this.quality.value || this.polls % QUALITY_REPEAT_POLLS === 0) {
      this.quality.value = q;
      this.conference.sendEndpointMessage('', { name: MSG_QUALITY, quality: q });
    }
  }
}
