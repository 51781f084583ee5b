// A meeting: the XMPP connection, the conference request to the focus, the
// MUC, the Jingle session with the focus and the bridge channel. What
// lib-jitsi-meet's JitsiConnection + JitsiConference are to Jitsi Meet.
import { uploadFile } from './upload';
import { client, xml, type Element, type IncomingContext, type XmppClient } from '@xmpp/client';
import { BridgeChannel, type BridgeMessage, type ReceiverVideoConstraints, type WebSocketFactory } from './bridge-channel';
import type { MeetConfig } from './config';
import { Emitter } from './emitter';
import { parseTurnServers, servicesRequest } from './extdisco';
import { conferenceRequest, parseConferenceResult, retryDelay } from './focus';
import { JingleError, parseJingle, sessionTerminate, type JingleMessage } from './jingle-sdp';
import { JingleSession, type RemoteTrack, type VideoCodec } from './jingle-session';
import {
  chatMessage,
  isFocusOccupant,
  leavePresence,
  newEndpointId,
  occupantPresence,
  isConfigChange,
  isInvitation,
  ownerConfigQuery,
  parseChatMessage,
  parseOccupantPresence,
  type ChatMessage,
  type OccupantPresence,
  type SourceInfo,
} from './muc';
import {
  adminItem,
  destroyRoom,
  discoInfo,
  invite,
  muteRequest,
  parseMuteNotice,
  parseRoomState,
  passwordConfig,
  roomConfig,
  type MediaKind,
} from './moderation';
import { NS_JINGLE, NS_JINGLE_ERRORS, NS_MUTE_AUDIO, NS_MUTE_VIDEO, NS_STANZAS } from './ns';

export type { RemoteTrack } from './jingle-session';
export type { MediaKind } from './moderation';

/**
 * Why the room did not let us in. `registration-required` with a
 * `lobbyRoom`: the meeting has its lobby on (`knock()`); `not-authorized`:
 * it is locked (`retryJoin(password)`). Either way the connection stays
 * open for the next step; `leave()` closes it.
 */
export class JoinError extends Error {
  constructor(
    readonly condition: string,
    readonly lobbyRoom?: string,
  ) {
    super(`joining the room failed: ${condition}`);
    this.name = 'JoinError';
  }

  get needsPassword(): boolean {
    return this.condition === 'not-authorized';
  }

  get lobby(): boolean {
    return this.condition === 'registration-required' && this.lobbyRoom !== undefined;
  }
}

/** Someone waiting in the lobby, as its moderators see them. */
export interface Knocker {
  /** Their nick in the lobby room. */
  id: string;
  displayName: string;
  /** Their full JID: an admission is an invitation to it. */
  jid: string;
}
export type { ChatMessage, SourceInfo } from './muc';

export interface Participant {
  endpointId: string;
  displayName?: string;
  /** Real JID, when the room shows it. */
  jid?: string;
  role?: string;
  affiliation?: string;
  /** Source name → muted/videoType, from the participant's SourceInfo. */
  sources: SourceInfo;
  /** Jitsi participant properties (`raisedHand`: when, in ms since 1970). */
  properties: Record<string, string>;
}

export interface ConferenceEvents {
  joined: { endpointId: string; roomJid: string };
  'participant-joined': Participant;
  'participant-left': Participant;
  'participant-updated': Participant;
  'remote-track': RemoteTrack;
  'remote-track-removed': RemoteTrack;
  /** `mine`: sent by this account in an earlier session here (the room's history; XEP-0421). */
  chat: ChatMessage & { displayName?: string; mine: boolean };
  'endpoint-message': { from: string; payload: unknown };
  'dominant-speaker': { endpointId: string; previous: string[]; silence: boolean };
  'forwarded-sources': { sources: string[] };
  'sender-constraints': { sourceName: string; maxHeight: number };
  'endpoint-connectivity': { endpointId: string; active: boolean };
  'bridge-channel-open': { url: string };
  'bridge-channel-closed': { code: number; reason: string };
  /** A bridge message of a class not given its own event (ServerHello, ...). */
  'bridge-message': BridgeMessage;
  'media-session-started': { sid: string };
  'media-session-ended': { sid: string; reason?: string };
  'media-failed': { error: unknown };
  'ice-state': { state: RTCIceConnectionState };
  'focus-left': Record<string, never>;
  'conference-failed': { reason: string; error?: unknown };
  /** Our own role or affiliation changed (e.g. made a moderator). */
  'role-changed': { role: string; affiliation: string };
  /** A moderator muted us through the focus; we muted ourselves. */
  'muted-by-moderator': { kind: MediaKind; actor?: string };
  /** Who waits in the lobby now (moderators only). */
  'lobby-changed': { knockers: Knocker[] };
  /** The room's lock and lobby, after a moderator changed either. */
  'room-state': { locked: boolean; lobby: boolean };
  /** The XMPP connection dropped; it is being re-established (media goes on). */
  'connection-interrupted': Record<string, never>;
  /** The dropped stream was resumed: nothing was lost. */
  'connection-restored': Record<string, never>;
  kicked: { actor?: string; reason?: string };
  left: { reason: string };
}

export interface JoinOptions {
  config: MeetConfig;
  /** Room name; lowercased for the MUC JID. */
  room: string;
  displayName: string;
  localStream?: MediaStream | null;
  /** Start with our audio/video muted (tracks disabled). */
  audioMuted?: boolean;
  videoMuted?: boolean;
  /** RTCPeerConnection configuration beyond bundle/rtcp-mux (e.g. iceServers). */
  rtcConfiguration?: RTCConfiguration;
  /** What to ask the bridge for; default: everyone, up to 720p. */
  receiverConstraints?: ReceiverVideoConstraints;
  /** The video codec to send: VP8 simulcast (default), or VP9 or AV1 SVC. */
  videoCodec?: VideoCodec;
  /** The room's password, when it is locked. */
  password?: string;
  /**
   * Join as this account instead of as a guest (a signed-in chat user):
   * members-only rooms (groups) let them in, and they may share files.
   */
  credentials?: { username: string; password: string };
  /** For tests. */
  webSocketFactory?: WebSocketFactory;
}

const JOIN_TIMEOUT_MS = 20000;
const FOCUS_RETRIES = 10;
const IQ_TIMEOUT_MS = 15000;
/** How long failed ICE may recover by itself before the session is restarted. */
const ICE_FAILED_GRACE_MS = 2000;
/** How long an in-place ICE restart may take before the session is restarted. */
const ICE_RESTART_TIMEOUT_MS = 5000;
/** At most one media restart this often, so a broken network cannot loop. */
const RESTART_MIN_INTERVAL_MS = 10000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function errorElement(type: string, condition: string, jingleCondition?: string, text?: string): Element {
  return xml(
    'error',
    { type },
    xml(condition, { xmlns: NS_STANZAS }),
    text !== undefined ? xml('text', { xmlns: NS_STANZAS }, text) : null,
    jingleCondition !== undefined ? xml(jingleCondition, { xmlns: NS_JINGLE_ERRORS }) : null,
  );
}

function bareJid(jid: string): string {
  const slash = jid.indexOf('/');
  return (slash < 0 ? jid : jid.slice(0, slash)).toLowerCase();
}

function randomId(): string {
  return newEndpointId() + newEndpointId();
}

export class Conference extends Emitter<ConferenceEvents> {
  /** Our endpoint id (MUC nick), set by join(). */
  endpointId = '';
  roomJid = '';
  private xmpp: XmppClient | null = null;
  private options: JoinOptions | null = null;
  private localJid = '';
  private turnServers: RTCIceServer[] = [];
  private focusJid: string | undefined;
  private focusOccupantSeen = false;
  private joined = false;
  private leaving = false;
  private presence = { displayName: '', audioMuted: false, videoMuted: false };
  private readonly properties = new Map<string, string>();
  private password = '';
  private role = '';
  /** Ours in the room (XEP-0421), from our own presence: which history is ours. */
  private ownOccupantId: string | undefined;
  private affiliation = '';
  private readonly forceMuted = { audio: false, video: false };
  /** The lobby room, once the room named one (to knock at, or to watch). */
  private lobbyJid = '';
  private watchingLobby = false;
  private readonly knockers = new Map<string, Knocker>();
  private knockWaiter: { resolve: () => void; reject: (e: Error) => void } | null = null;
  /** What our video source shows: a camera, or a screen being shared. */
  private videoType: 'camera' | 'desktop' = 'camera';
  private readonly participants = new Map<string, Participant>();
  private session: JingleSession | null = null;
  private sessionPeer = '';
  private lastRestart = 0;
  private bridge: BridgeChannel | null = null;
  private localStream: MediaStream | null = null;
  private readonly remoteTracks = new Map<string, RemoteTrack>();
  private joinWaiter: { resolve: () => void; reject: (e: Error) => void } | null = null;

  get isJoined(): boolean {
    return this.joined;
  }

  get bridgeChannelOpen(): boolean {
    return this.bridge?.isOpen ?? false;
  }

  get peerConnection(): RTCPeerConnection | null {
    return this.session?.peerConnection ?? null;
  }

  getParticipants(): Participant[] {
    return [...this.participants.values()];
  }

  /** Every track received now, keyed by nothing: one entry per remote source. */
  getRemoteTracks(): RemoteTrack[] {
    return [...this.remoteTracks.values()];
  }

  getLocalStream(): MediaStream | null {
    return this.localStream;
  }

  /**
   * Connects (SASL ANONYMOUS), asks the focus for the conference, joins the
   * MUC. Resolves once we are in the room; media follows when the focus
   * sends its session-initiate (events `media-session-started`, `remote-track`).
   */
  async join(opts: JoinOptions): Promise<void> {
    if (this.xmpp) throw new Error('already joined');
    this.options = opts;
    this.localStream = opts.localStream ?? null;
    this.presence = {
      displayName: opts.displayName,
      audioMuted: opts.audioMuted ?? false,
      videoMuted: opts.videoMuted ?? false,
    };
    this.applyMute();
    this.password = opts.password ?? '';
    this.roomJid = `${opts.room.toLowerCase()}@${opts.config.muc}`;
    this.endpointId = newEndpointId();

    const xmpp =
      opts.credentials !== undefined
        ? client({ service: opts.config.websocket, domain: opts.config.domain, ...opts.credentials })
        : client({ service: opts.config.websocket, domain: opts.config.guestDomain ?? opts.config.domain });
    this.xmpp = xmpp;
    // A dropped connection is reconnected and its stream resumed (XEP-0198,
    // as lib-jitsi-meet's ResumeTask does): the JID, the room and the media
    // session survive, and media never stopped meanwhile. A reconnect that
    // could not resume is a new session, in which this meeting is gone.
    xmpp.on('error', (err) => console.warn('xmpp error', err));
    xmpp.on('stanza', (el) => this.onStanza(el));
    xmpp.on('offline', () => this.onOffline());
    xmpp.on('disconnect', () => {
      if (this.joined && !this.leaving) this.emit('connection-interrupted', {});
    });
    xmpp.streamManagement.on('resumed', () => {
      if (this.joined && !this.leaving) this.emit('connection-restored', {});
    });
    xmpp.on('online', () => {
      if (this.joined) this.onOffline();
    });
    xmpp.iqCallee.set(NS_JINGLE, 'jingle', (ctx) => this.onJingleIq(ctx));
    xmpp.iqCallee.set(NS_MUTE_AUDIO, 'mute', (ctx) => this.onMuteIq(ctx));
    xmpp.iqCallee.set(NS_MUTE_VIDEO, 'mute', (ctx) => this.onMuteIq(ctx));

    try {
      const jid = await xmpp.start();
      this.localJid = jid.toString();
      this.turnServers = await this.fetchTurnServers(jid.domain);
      await this.requestConference();
      await this.joinRoom();
    } catch (err) {
      // Locked, or behind the lobby: the caller may give a password or knock.
      if (err instanceof JoinError && (err.needsPassword || err.lobby)) {
        if (err.lobbyRoom !== undefined) this.lobbyJid = err.lobbyRoom;
        throw err;
      }
      this.emit('conference-failed', { reason: err instanceof Error ? err.message : String(err), error: err });
      await this.teardown();
      throw err;
    }
  }

  /** After a `JoinError` that needs a password: tries again with it. */
  async retryJoin(password: string): Promise<void> {
    this.password = password;
    await this.joinRoom();
  }

  /**
   * After a `JoinError` naming the lobby: waits there under our display
   * name until a moderator admits us (then we are in the meeting), denies
   * us (rejects with 'denied') or turns the lobby off (we go in).
   */
  async knock(): Promise<void> {
    const xmpp = this.xmpp;
    if (!xmpp || this.lobbyJid === '') throw new Error('no lobby to knock at');
    const admitted = new Promise<void>((resolve, reject) => {
      this.knockWaiter = { resolve, reject };
    });
    await xmpp.send(occupantPresence(`${this.lobbyJid}/${this.endpointId}`, { ...this.presence, sources: {} }, true));
    try {
      await admitted;
    } finally {
      this.knockWaiter = null;
    }
    await xmpp.send(leavePresence(`${this.lobbyJid}/${this.endpointId}`)).catch(() => undefined);
    await this.joinRoom();
  }

  // ------------------------------------------------------------ moderation

  get isModerator(): boolean {
    return this.role === 'moderator';
  }

  /** Mutes another participant (moderators), through the focus's occupant. */
  async muteParticipant(endpointId: string, kind: MediaKind = 'audio'): Promise<void> {
    await this.sendIq(this.focusOccupant, muteRequest(`${this.roomJid}/${endpointId}`, kind, true));
  }

  /** Where mute requests go, as lib-jitsi-meet sends them: the focus in the room. */
  private get focusOccupant(): string {
    return `${this.roomJid}/focus`;
  }

  /** Mutes everyone else, one request each, as lib-jitsi-meet does. */
  async muteAll(kind: MediaKind = 'audio'): Promise<void> {
    await Promise.all(this.getParticipants().map((p) => this.muteParticipant(p.endpointId, kind)));
  }

  /** Removes a participant from the meeting (XEP-0045 kick). */
  async kick(endpointId: string, reason = ''): Promise<void> {
    await this.sendIq(this.roomJid, adminItem({ nick: endpointId, role: 'none' }, reason));
  }

  /** Makes a participant a moderator: owner of the room, as Jicofo grants it. */
  async grantModerator(endpointId: string): Promise<void> {
    const jid = this.participants.get(endpointId)?.jid;
    const item: Record<string, string> =
      jid !== undefined ? { jid: bareJid(jid), affiliation: 'owner' } : { nick: endpointId, role: 'moderator' };
    await this.sendIq(this.roomJid, adminItem(item));
  }

  /** Locks the meeting with a password, or unlocks it with ''. */
  async setPassword(password: string): Promise<void> {
    await this.sendIq(this.roomJid, passwordConfig(password));
    this.password = password;
  }

  /**
   * Turns the lobby on (those present become members, then the room
   * members-only, and we watch the lobby for knockers) or off (whoever
   * waits goes in), as lib-jitsi-meet's Lobby does.
   */
  async setLobby(on: boolean): Promise<void> {
    if (on) {
      // Those already in stay in; owners and admins are left as they are.
      const present = [...this.participants.values()].flatMap((p) =>
        p.jid !== undefined && (p.affiliation ?? 'none') === 'none' ? [bareJid(p.jid)] : [],
      );
      for (const jid of present) {
        await this.sendIq(this.roomJid, adminItem({ jid, affiliation: 'member' })).catch(() => undefined);
      }
    }
    await this.sendIq(this.roomJid, roomConfig({ 'muc#roomconfig_membersonly': on ? 'true' : 'false' }));
    // Learns the lobby room's name, and (on) starts watching it.
    if (on) await this.refreshRoomState();
  }

  /** Lets a knocker in: an invitation through the room, which makes them a member. */
  async admit(knockerId: string): Promise<void> {
    const k = this.knockers.get(knockerId);
    if (!k || !this.xmpp) throw new Error('nobody knocks under that id');
    await this.xmpp.send(invite(this.roomJid, k.jid));
  }

  /** Turns a knocker away: a kick from the lobby room. */
  async deny(knockerId: string): Promise<void> {
    if (this.lobbyJid === '') return;
    await this.sendIq(this.lobbyJid, adminItem({ nick: knockerId, role: 'none' }));
  }

  /** Ends the meeting for everyone: the room is destroyed. */
  async endForAll(reason = ''): Promise<void> {
    await this.sendIq(this.roomJid, destroyRoom(reason));
  }

  /** The room's lock and lobby now (disco#info), also sent as `room-state`. */
  async refreshRoomState(): Promise<{ locked: boolean; lobby: boolean }> {
    if (!this.xmpp) throw new Error('not connected');
    const { lobbyRoom, ...state } = parseRoomState(
      await this.xmpp.iqCaller.request(xml('iq', { type: 'get', to: this.roomJid }, discoInfo()), IQ_TIMEOUT_MS),
    );
    if (lobbyRoom !== undefined) this.lobbyJid = lobbyRoom;
    this.emit('room-state', state);
    if (state.lobby && this.isModerator) await this.watchLobby().catch(() => undefined);
    return state;
  }

  /** Moderators join the lobby room to see who knocks (its owners see real JIDs). */
  private async watchLobby(): Promise<void> {
    if (this.watchingLobby || !this.xmpp || this.lobbyJid === '') return;
    this.watchingLobby = true;
    await this.xmpp.send(occupantPresence(`${this.lobbyJid}/${this.endpointId}`, { ...this.presence, sources: {} }, true));
  }

  private onLobbyPresence(p: OccupantPresence): void {
    if (p.nick === this.endpointId) {
      // Our own presence there: denied (kicked) or the lobby closed.
      if (p.type === 'unavailable') {
        this.watchingLobby = false;
        this.knockers.clear();
        if (p.statuses.includes(307)) this.knockWaiter?.reject(new Error('denied'));
        else if (p.destroyed) this.knockWaiter?.resolve();
      } else if (p.type === 'error') {
        this.knockWaiter?.reject(new Error(`the lobby refused us: ${p.error ?? 'error'}`));
      }
      return;
    }
    if (!this.watchingLobby) return;
    if (p.type === 'unavailable') this.knockers.delete(p.nick);
    else if (p.type === 'available' && p.role !== 'moderator' && p.realJid !== undefined) {
      this.knockers.set(p.nick, { id: p.nick, displayName: p.displayName ?? '', jid: p.realJid });
    }
    this.emit('lobby-changed', { knockers: [...this.knockers.values()] });
  }

  /** Ends the media session, leaves the room, disconnects. */
  async leave(): Promise<void> {
    if (this.leaving || !this.xmpp) return;
    this.leaving = true;
    const xmpp = this.xmpp;
    const session = this.session;
    if (session && !session.isEnded && this.sessionPeer !== '') {
      const a: { sid: string; initiator?: string; owner: string } = { sid: session.sid, owner: this.occupantJid };
      await Promise.race([
        this.sendIq(this.sessionPeer, sessionTerminate(a)).catch(() => undefined),
        sleep(2000),
      ]);
    }
    if (this.joined) await xmpp.send(leavePresence(this.occupantJid)).catch(() => undefined);
    await this.teardown();
    this.emit('left', { reason: 'left' });
  }

  setAudioMuted(muted: boolean): void {
    this.liftForceMute('audio', muted);
    this.presence.audioMuted = muted;
    this.applyMute();
    void this.sendPresence();
  }

  setVideoMuted(muted: boolean): void {
    this.liftForceMute('video', muted);
    this.presence.videoMuted = muted;
    this.applyMute();
    void this.sendPresence();
  }

  get audioMuted(): boolean {
    return this.presence.audioMuted;
  }

  get videoMuted(): boolean {
    return this.presence.videoMuted;
  }

  /**
   * Sets (or, with null, removes) one of our participant properties, which
   * Jitsi clients read from presence: `raisedHand` holds the time it went up.
   */
  setLocalProperty(name: string, value: string | null): void {
    if (value === null) this.properties.delete(name);
    else this.properties.set(name, value);
    void this.sendPresence();
  }

  setDisplayName(name: string): void {
    this.presence.displayName = name;
    void this.sendPresence();
  }

  /**
   * Replaces our local stream (e.g. a new camera); sources that appear or
   * disappear are signalled to the focus.
   */
  async setLocalStream(stream: MediaStream | null, videoType: 'camera' | 'desktop' = 'camera'): Promise<void> {
    this.localStream = stream;
    this.videoType = videoType;
    this.applyMute();
    const s = this.session;
    if (s) {
      await s.setLocalTrack('audio', stream?.getAudioTracks()[0] ?? null, stream ?? undefined);
      await s.setLocalTrack('video', stream?.getVideoTracks()[0] ?? null, stream ?? undefined);
    }
    await this.sendPresence();
  }

  /**
   * A new track for a source we already send (a camera turned on again):
   * no source changes, so nothing is signalled but the unmute.
   */
  async replaceLocalTrack(kind: 'audio' | 'video', stream: MediaStream): Promise<void> {
    const track = kind === 'audio' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
    if (!track) throw new Error(`no ${kind} track`);
    this.localStream = stream;
    this.applyMute();
    await this.session?.replaceLocalTrack(kind, track, stream);
  }

  /**
   * Sends JSON to one endpoint, or to all with `to` = '', over the bridge
   * channel. Queued until the channel opens; false if it cannot be.
   */
  sendEndpointMessage(to: string, payload: unknown): boolean {
    if (!this.bridge) return false;
    return this.bridge.sendEndpointMessage(to, payload);
  }

  setReceiverConstraints(c: ReceiverVideoConstraints): void {
    if (this.options) this.options.receiverConstraints = c;
    this.bridge?.setReceiverConstraints(c);
  }

  /**
   * A room message, or a private one to `to` (an endpoint id). Resolves to
   * the message's id, which the room's history keeps, so that a client that
   * rejoins can tell its own earlier messages.
   */
  async sendChat(text: string, to?: string, file = false): Promise<string> {
    if (!this.xmpp || !this.joined) throw new Error('not in the room');
    const target = to === undefined ? this.roomJid : `${this.roomJid}/${to}`;
    const id = randomId();
    await this.xmpp.send(chatMessage(target, text, to !== undefined, id, this.presence.displayName, file));
    return id;
  }

  /**
   * Uploads `file` to the server (XEP-0363), reporting the fraction sent,
   * then shares its URL in the chat; resolves with the URL and the message
   * id. Guests may not upload (the server says so; UploadError 'forbidden').
   */
  async sendFile(file: File, onProgress: (fraction: number) => void, to?: string, signal?: AbortSignal): Promise<{ url: string; id: string }> {
    if (!this.xmpp || !this.joined || !this.options) throw new Error('not in the room');
    const url = await uploadFile(this.xmpp, `upload.${this.options.config.domain}`, file, onProgress, signal);
    const id = await this.sendChat(url, to, true);
    return { url, id };
  }

  /**
   * An in-place ICE restart: new credentials with the bridge while media
   * goes on (lib-jitsi-meet's `enableIceRestart`); if the focus refuses,
   * a session restart instead.
   */
  async restartIce(): Promise<void> {
    const s = this.session;
    if (!s || s.isEnded) return;
    try {
      await s.requestIceRestart();
    } catch {
      await this.restartMedia();
    }
  }

  /**
   * Ends the media session and asks the focus for a new one on a fresh
   * bridge endpoint, as lib-jitsi-meet does when ICE fails (called by
   * itself then, and open to callers that know the network changed).
   */
  async restartMedia(): Promise<void> {
    const s = this.session;
    const peer = this.sessionPeer;
    const now = Date.now();
    if (!s || s.isEnded || peer === '' || now - this.lastRestart < RESTART_MIN_INTERVAL_MS) return;
    this.lastRestart = now;
    const request = s.restartRequest();
    this.endSession('restart');
    await this.sendIq(peer, request);
  }

  // ------------------------------------------------------------- internals

  private get occupantJid(): string {
    return `${this.roomJid}/${this.endpointId}`;
  }

  private localSources(): SourceInfo {
    const s: SourceInfo = {};
    if (this.localStream?.getAudioTracks()[0]) s[`${this.endpointId}-a0`] = { muted: this.presence.audioMuted };
    if (this.localStream?.getVideoTracks()[0]) {
      s[`${this.endpointId}-v0`] = { muted: this.presence.videoMuted, videoType: this.videoType };
    }
    return s;
  }

  private applyMute(): void {
    for (const t of this.localStream?.getAudioTracks() ?? []) t.enabled = !this.presence.audioMuted;
    for (const t of this.localStream?.getVideoTracks() ?? []) t.enabled = !this.presence.videoMuted;
  }

  private async sendPresence(join = false): Promise<void> {
    if (!this.xmpp || (!join && !this.joined)) return;
    await this.xmpp.send(
      occupantPresence(
        this.occupantJid,
        { ...this.presence, sources: this.localSources(), properties: Object.fromEntries(this.properties) },
        join,
        this.password,
      ),
    );
  }

  private async sendIq(to: string, child: Element): Promise<Element> {
    if (!this.xmpp) throw new Error('not connected');
    return this.xmpp.iqCaller.request(xml('iq', { type: 'set', to }, child), IQ_TIMEOUT_MS);
  }

  /** TURN servers from the XMPP server (XEP-0215); none is only a warning. */
  private async fetchTurnServers(domain: string): Promise<RTCIceServer[]> {
    if (!this.xmpp) return [];
    try {
      return parseTurnServers(await this.xmpp.iqCaller.request(servicesRequest(domain), IQ_TIMEOUT_MS));
    } catch (err) {
      console.warn('no TURN servers (XEP-0215)', err);
      return [];
    }
  }

  private async requestConference(): Promise<void> {
    const opts = this.options;
    const xmpp = this.xmpp;
    if (!opts || !xmpp) throw new Error('not connected');
    const machineUid = randomId();
    for (let attempt = 0; attempt < FOCUS_RETRIES; attempt++) {
      const reply = await xmpp.iqCaller.request(
        conferenceRequest(opts.config.focus, this.roomJid, machineUid, {
          startAudioMuted: this.presence.audioMuted,
          startVideoMuted: this.presence.videoMuted,
        }),
        IQ_TIMEOUT_MS,
      );
      const result = parseConferenceResult(reply);
      if (result.ready) {
        this.focusJid = result.focusJid ?? opts.config.focus;
        return;
      }
      await sleep(retryDelay(attempt));
    }
    throw new Error('the focus did not get the conference ready');
  }

  private async joinRoom(): Promise<void> {
    const joined = new Promise<void>((resolve, reject) => {
      this.joinWaiter = { resolve, reject };
    });
    const timer = setTimeout(() => this.joinWaiter?.reject(new Error('joining the room timed out')), JOIN_TIMEOUT_MS);
    try {
      await this.sendPresence(true);
      await joined;
    } finally {
      clearTimeout(timer);
      this.joinWaiter = null;
    }
  }

  private onStanza(el: Element): void {
    if (el.is('presence')) {
      const p = parseOccupantPresence(el, this.roomJid);
      if (p) this.onOccupantPresence(p);
      else if (this.lobbyJid !== '') {
        const l = parseOccupantPresence(el, this.lobbyJid);
        if (l) this.onLobbyPresence(l);
      }
    } else if (isInvitation(el, this.roomJid)) {
      this.knockWaiter?.resolve();
    } else if (isConfigChange(el, this.roomJid)) {
      void this.refreshRoomState().catch(() => undefined);
    } else if (el.is('message')) {
      const m = parseChatMessage(el, this.roomJid);
      if (m && m.from !== this.endpointId) {
        const displayName = this.participants.get(m.from)?.displayName ?? m.nick;
        const mine = m.occupantId !== undefined && m.occupantId === this.ownOccupantId;
        this.emit('chat', displayName !== undefined ? { ...m, displayName, mine } : { ...m, mine });
      }
    }
  }

  private onOccupantPresence(p: OccupantPresence): void {
    const self = p.nick === this.endpointId || p.statuses.includes(110);
    if (self) {
      this.onSelfPresence(p);
      return;
    }
    if (p.type === 'error') return;
    if (p.nick === 'focus') {
      if (isFocusOccupant(p, this.focusJid)) {
        if (p.type === 'unavailable') {
          this.focusOccupantSeen = false;
          this.emit('focus-left', {});
        } else {
          this.focusOccupantSeen = true;
        }
      }
      return;
    }
    const existing = this.participants.get(p.nick);
    if (p.type === 'unavailable' || !p.inMeeting) {
      if (existing) {
        this.participants.delete(p.nick);
        this.emit('participant-left', existing);
      }
      return;
    }
    const participant: Participant = { endpointId: p.nick, sources: p.sources, properties: p.properties };
    if (p.displayName !== undefined) participant.displayName = p.displayName;
    if (p.realJid !== undefined) participant.jid = p.realJid;
    if (p.role !== undefined) participant.role = p.role;
    if (p.affiliation !== undefined) participant.affiliation = p.affiliation;
    this.participants.set(p.nick, participant);
    this.emit(existing ? 'participant-updated' : 'participant-joined', participant);
  }

  private onSelfPresence(p: OccupantPresence): void {
    if (p.type === 'error') {
      this.joinWaiter?.reject(new JoinError(p.error ?? 'undefined-condition', p.lobbyRoom));
      return;
    }
    if (p.type === 'available' && p.occupantId !== undefined) this.ownOccupantId = p.occupantId;
    if (p.type === 'available' && (p.role !== this.role || p.affiliation !== this.affiliation)) {
      this.role = p.role ?? '';
      this.affiliation = p.affiliation ?? '';
      this.emit('role-changed', { role: this.role, affiliation: this.affiliation });
      if (this.isModerator && this.joined) void this.refreshRoomState().catch(() => undefined);
    }
    if (p.type === 'unavailable') {
      if (this.leaving) return;
      if (p.statuses.includes(307)) {
        const k: { actor?: string; reason?: string } = {};
        if (p.actor !== undefined) k.actor = p.actor;
        if (p.reason !== undefined) k.reason = p.reason;
        this.emit('kicked', k);
      } else {
        this.emit('conference-failed', { reason: p.destroyed ? 'room-destroyed' : 'removed-from-room' });
      }
      void this.teardown().then(() => this.emit('left', { reason: 'removed' }));
      return;
    }
    if (!this.joined) {
      this.joined = true;
      const created = p.statuses.includes(201);
      const done = () => {
        this.emit('joined', { endpointId: this.endpointId, roomJid: this.roomJid });
        this.joinWaiter?.resolve();
      };
      if (created) {
        this.sendIq(this.roomJid, ownerConfigQuery())
          .catch((err: unknown) => console.warn('room configuration failed', err))
          .finally(done);
      } else {
        done();
      }
    }
  }

  private isFromFocus(from: string | undefined): boolean {
    if (from === undefined) return false;
    if (from.toLowerCase() === `${this.roomJid}/focus`) return this.focusOccupantSeen;
    return this.focusJid !== undefined && bareJid(from) === bareJid(this.focusJid);
  }

  /**
   * Unmuting after a moderator's mute: the bridge forwards our media again
   * only once the focus hears it from us (Jitsi lets one unmute oneself).
   */
  private liftForceMute(kind: MediaKind, muted: boolean): void {
    if (muted || !this.forceMuted[kind]) return;
    this.forceMuted[kind] = false;
    void this.sendIq(this.focusOccupant, muteRequest(this.occupantJid, kind, false)).catch((err: unknown) =>
      console.warn('unmute refused by the focus', err),
    );
  }

  /** The focus tells us a moderator muted us: we mute ourselves. */
  private onMuteIq(ctx: IncomingContext): unknown {
    if (!this.isFromFocus(ctx.stanza.attrs.from)) {
      return errorElement('cancel', 'not-authorized', undefined, 'mute is only accepted from the focus');
    }
    const m = parseMuteNotice(ctx.element);
    if (!m) return errorElement('modify', 'bad-request');
    if (m.muted) {
      this.forceMuted[m.kind] = true;
      this.presence[m.kind === 'audio' ? 'audioMuted' : 'videoMuted'] = true;
      this.applyMute();
      void this.sendPresence();
      this.emit('muted-by-moderator', m.actor !== undefined ? { kind: m.kind, actor: m.actor } : { kind: m.kind });
    }
    return true;
  }

  private onJingleIq(ctx: IncomingContext): unknown {
    const from = ctx.stanza.attrs.from;
    if (!this.isFromFocus(from) || from === undefined) {
      return errorElement('cancel', 'not-authorized', undefined, 'Jingle is only accepted from the focus');
    }
    let msg: JingleMessage;
    try {
      msg = parseJingle(ctx.element);
    } catch (err) {
      const text = err instanceof JingleError ? err.message : 'malformed jingle';
      return errorElement('modify', 'bad-request', undefined, text);
    }
    if (msg.action === 'session-initiate') {
      this.startSession(from, msg);
      return true;
    }
    const session = this.session;
    if (!session || session.isEnded || session.sid !== msg.sid) {
      return errorElement('cancel', 'item-not-found', 'unknown-session');
    }
    switch (msg.action) {
      case 'source-add':
      case 'addsource':
        void session.sourceAdd(msg).catch(() => undefined);
        return true;
      case 'source-remove':
      case 'removesource':
        void session.sourceRemove(msg).catch(() => undefined);
        return true;
      case 'transport-info':
        void session.transportInfo(msg).catch(() => undefined).then(() => this.updateBridgeUrl());
        return true;
      case 'session-info':
        return true;
      case 'session-terminate':
        this.endSession(msg.reason);
        return true;
      default:
        return errorElement('cancel', 'feature-not-implemented', 'unsupported-info');
    }
  }

  private startSession(peer: string, msg: JingleMessage): void {
    if (this.session && !this.session.isEnded) this.endSession('replaced');
    const opts = this.options;
    if (!opts) return;
    this.sessionPeer = peer;
    const session = new JingleSession(
      {
        endpointId: this.endpointId,
        ownerJid: this.occupantJid,
        localJid: this.localJid,
        videoCodec: opts.videoCodec ?? 'VP8',
        sendJingle: async (el) => {
          await this.sendIq(peer, el);
        },
        createPeerConnection: () =>
          new RTCPeerConnection({
            ...opts.rtcConfiguration,
            iceServers: [...(opts.rtcConfiguration?.iceServers ?? []), ...this.turnServers],
            bundlePolicy: 'max-bundle',
            rtcpMuxPolicy: 'require',
          }),
        onRemoteTrack: (t) => {
          this.remoteTracks.set(t.mid, t);
          this.emit('remote-track', t);
        },
        onRemoteTrackRemoved: (t) => {
          if (this.remoteTracks.get(t.mid) === t) this.remoteTracks.delete(t.mid);
          this.emit('remote-track-removed', t);
        },
        onIceState: (state) => {
          this.emit('ice-state', { state });
          // A failed connection gets a grace period to recover on its own,
          // then an in-place ICE restart, then (if that does not bring it
          // back either) a new session, as lib-jitsi-meet does.
          const failed = () =>
            this.session === session && session.peerConnection?.iceConnectionState === 'failed';
          if (state === 'failed') {
            setTimeout(() => {
              if (!failed()) return;
              void this.restartIce().catch(() => undefined);
              setTimeout(() => {
                if (failed()) void this.restartMedia().catch(() => undefined);
              }, ICE_RESTART_TIMEOUT_MS);
            }, ICE_FAILED_GRACE_MS);
          }
        },
        onFailed: (error) => {
          console.error('media session failed', error);
          this.emit('media-failed', { error });
        },
      },
      msg,
      this.localStream,
    );
    this.session = session;
    this.emit('media-session-started', { sid: session.sid });
    this.updateBridgeUrl();
    session.start().catch(() => {
      // Reported through onFailed; tell the focus this session is dead.
      if (this.session === session) {
        void this.sendIq(peer, sessionTerminate({ sid: session.sid, owner: this.occupantJid }, 'failed-application'))
          .catch(() => undefined);
        this.endSession('failed-application');
      }
    });
  }

  private endSession(reason?: string): void {
    const s = this.session;
    if (!s) return;
    s.close();
    this.session = null;
    this.bridge?.close();
    this.bridge = null;
    const ended: { sid: string; reason?: string } = { sid: s.sid };
    if (reason !== undefined) ended.reason = reason;
    this.emit('media-session-ended', ended);
  }

  private updateBridgeUrl(): void {
    const url = this.session?.websocketUrl;
    const opts = this.options;
    if (url === undefined || !opts) return;
    if (this.bridge) {
      this.bridge.setUrl(url);
      return;
    }
    const bridgeOpts: ConstructorParameters<typeof BridgeChannel>[2] = {
      constraints: opts.receiverConstraints ?? { lastN: -1, defaultConstraints: { maxHeight: 720 } },
    };
    if (opts.webSocketFactory) bridgeOpts.factory = opts.webSocketFactory;
    this.bridge = new BridgeChannel(
      url,
      {
        onOpen: () => this.emit('bridge-channel-open', { url }),
        onClose: (code, reason) => this.emit('bridge-channel-closed', { code, reason }),
        onMessage: (m) => this.onBridgeMessage(m),
      },
      bridgeOpts,
    );
  }

  private onBridgeMessage(m: BridgeMessage): void {
    switch (m.colibriClass) {
      case 'EndpointMessage':
        if (typeof m.from === 'string') this.emit('endpoint-message', { from: m.from, payload: m.msgPayload });
        return;
      case 'DominantSpeakerEndpointChangeEvent':
        if (typeof m.dominantSpeakerEndpoint === 'string') {
          this.emit('dominant-speaker', {
            endpointId: m.dominantSpeakerEndpoint,
            previous: Array.isArray(m.previousSpeakers)
              ? m.previousSpeakers.filter((x): x is string => typeof x === 'string')
              : [],
            silence: m.silence === true,
          });
        }
        return;
      case 'ForwardedSources':
        if (Array.isArray(m.forwardedSources)) {
          this.emit('forwarded-sources', {
            sources: m.forwardedSources.filter((x): x is string => typeof x === 'string'),
          });
        }
        return;
      case 'SenderSourceConstraints':
        if (typeof m.sourceName === 'string' && typeof m.maxHeight === 'number') {
          this.emit('sender-constraints', { sourceName: m.sourceName, maxHeight: m.maxHeight });
          void this.session?.applySenderMaxHeight(m.sourceName, m.maxHeight).catch(() => undefined);
        }
        return;
      case 'EndpointConnectivityStatusChangeEvent':
        if (typeof m.endpoint === 'string') {
          this.emit('endpoint-connectivity', { endpointId: m.endpoint, active: m.active === true || m.active === 'true' });
        }
        return;
      default:
        this.emit('bridge-message', m);
    }
  }

  private onOffline(): void {
    if (this.leaving) return;
    this.emit('conference-failed', { reason: 'connection-lost' });
    void this.teardown().then(() => this.emit('left', { reason: 'connection-lost' }));
  }

  private async teardown(): Promise<void> {
    this.leaving = true;
    this.endSession();
    this.bridge?.close();
    this.bridge = null;
    this.joined = false;
    this.joinWaiter?.reject(new Error('left'));
    this.knockWaiter?.reject(new Error('left'));
    const xmpp = this.xmpp;
    this.xmpp = null;
    if (xmpp && xmpp.status !== 'offline') await xmpp.stop().catch(() => undefined);
  }
}
