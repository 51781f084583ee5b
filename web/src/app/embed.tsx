// The meeting page's side of the embedding API (/external_api.js, in
// ../embed/): active only when the page is in a frame and its URL hash
// carries the API's parameters. It reports the meeting's events to the
// embedding page and carries out its commands, reading the store's signals
// and calling the store's actions as the toolbar does.
//
// Security: events are posted to the parent origin named in the hash only
// (never '*'; where the browser tells, that origin must be the real
// parent's), and commands are taken only from `window.parent` at that
// origin. Which sites may frame the page at all is the server's
// `meetings.embed_origins` (its CSP frame-ancestors).
import { effect } from '@preact/signals';
import i18next from 'i18next';
import { useEffect } from 'preact/hooks';
import { asToFrame, parseHash, TAG, MAX_NAME, type EmbedParams, type ToFrame, type ToParent } from '../embed/protocol';
import { t } from './i18n';
import { openMedia, stopStream } from './media';
import { MAX_CHAT_MESSAGE, type MeetingStore } from './meeting/store';
import { Notice } from './notice';
import type { PreJoinResult } from './prejoin';

/** Commands that came before the meeting was joined, run once it is. */
const MAX_QUEUED = 50;

type Distribute<T> = T extends unknown ? Omit<T, 'tag' | 'apiId'> : never;
type Outgoing = Distribute<ToParent>;

/**
 * A failure the person sees in the frame, told to the site as Jitsi's
 * `errorOccurred` (its names, so that a site written for Jitsi's API can
 * tell them apart).
 */
export interface EmbedError {
  name:
    | 'connection.otherError'
    | 'conference.setupFailed'
    | 'conference.authenticationRequired'
    | 'conference.conferenceAccessDenied';
  type: 'CONNECTION' | 'CONFERENCE';
  message: string;
  isFatal: boolean;
}

class Embed {
  private store: MeetingStore | null = null;
  /** While the meeting asks for its password: how to try one. */
  passwordPrompt: ((password: string) => void) | null = null;
  private joined = false;
  private queue: ToFrame[] = [];

  constructor(readonly params: EmbedParams) {
    if (params.lang !== undefined) void i18next.changeLanguage(params.lang);
    window.addEventListener('message', (e) => this.receive(e));
    this.post({ kind: 'ready' });
  }

  private post(m: Outgoing): void {
    window.parent.postMessage({ tag: TAG, apiId: this.params.apiId, ...m }, this.params.parentOrigin);
  }

  private event(name: string, data: Record<string, unknown> = {}): void {
    this.post({ kind: 'event', name, data });
  }

  private receive(e: MessageEvent): void {
    if (e.source !== window.parent || e.origin !== this.params.parentOrigin) return;
    const m = asToFrame(e.data, this.params.apiId);
    if (m === null) return;
    if (m.kind === 'request') {
      this.post({ kind: 'response', reqId: m.reqId, ok: true, result: this.answer(m.name) });
    } else if (m.name === 'password' && this.passwordPrompt !== null) {
      // Jitsi's `password` before joining: the locked meeting's password.
      const [pw] = m.args;
      if (typeof pw === 'string' && pw !== '') this.passwordPrompt(pw);
    } else if (this.joined && this.store) {
      this.run(this.store, m.name, m.args);
    } else if (this.queue.length < MAX_QUEUED) {
      this.queue.push(m);
    }
  }

  private answer(name: string): unknown {
    const s = this.store;
    switch (name) {
      case 'isAudioMuted':
        return s ? s.audioMuted.value : this.params.startWithAudioMuted === true;
      case 'isVideoMuted':
        return s ? s.videoMuted.value : this.params.startWithVideoMuted === true;
      case 'isSharingScreen':
        return s?.sharing.value ?? false;
      default:
        return null;
    }
  }

  private run(s: MeetingStore, name: string, args: unknown[]): void {
    const [a, b] = args;
    const hasAudio = (s.localStream.value?.getAudioTracks().length ?? 0) > 0;
    const hasVideo = (s.localStream.value?.getVideoTracks().length ?? 0) > 0;
    switch (name) {
      case 'displayName':
        if (typeof a === 'string' && a.trim() !== '') s.setDisplayName(a.trim().slice(0, MAX_NAME));
        break;
      case 'toggleAudio':
        if (hasAudio) s.toggleAudio();
        break;
      case 'toggleVideo':
        if (hasVideo || s.videoMuted.value) void s.toggleVideo();
        break;
      case 'toggleShareScreen':
        if (s.sharing.value) void s.stopScreenShare();
        else s.startScreenShare().catch(() => undefined);
        break;
      case 'toggleChat':
        s.openPanel('chat');
        break;
      case 'toggleParticipantsPane':
        s.openPanel('participants');
        break;
      case 'toggleTileView':
        s.layout.value = s.layout.value === 'tile' ? 'stage' : 'tile';
        break;
      case 'setTileView':
        if (typeof a === 'boolean') s.layout.value = a ? 'tile' : 'stage';
        break;
      case 'toggleRaiseHand':
        s.toggleHand();
        break;
      case 'sendChatMessage': {
        if (typeof a !== 'string' || a.trim() === '' || a.length > MAX_CHAT_MESSAGE) break;
        // To one participant (privately) when `to` names one in the meeting.
        const to = typeof b === 'string' && b !== '' ? b : undefined;
        if (to !== undefined && !s.peers.value.has(to)) break;
        void s.sendChat(a, to).catch(() => undefined);
        break;
      }
      case 'hangup':
        void s.leave();
        break;
      case 'password':
        // Once in, a moderator's `password` locks the meeting ('' unlocks).
        if (typeof a === 'string' && s.isModerator.value) void s.setPassword(a).catch(() => undefined);
        break;
    }
  }

  error(e: EmbedError): void {
    this.event('errorOccurred', { ...e });
  }

  /** Follows the meeting: Jitsi's events, from the store's signals. */
  attach(s: MeetingStore, room: string): void {
    this.store = s;
    let ended = false;
    let names = new Map<string, string>();
    let audio = s.audioMuted.value;
    let video = s.videoMuted.value;
    let sharing = s.sharing.value;
    let tile = s.layout.value === 'tile';
    let chatOpen = false;
    let hand = false;
    let myName = '';
    const seenChat = new Set<string>();
    const dispose = effect(() => {
      const phase = s.phase.value;
      const id = s.localId.value;
      const displayName = s.displayName.value;
      const order = s.order.value;
      const peers = s.peers.value;
      const chat = s.chat.value;
      const nowAudio = s.audioMuted.value;
      const nowVideo = s.videoMuted.value;
      const nowSharing = s.sharing.value;
      const nowTile = s.layout.value === 'tile';
      const nowChatOpen = s.panel.value === 'chat';
      const unread = s.unread.value;
      const nowHand = s.handRaised.value;
      if (ended) return;
      if (phase === 'left' || phase === 'kicked' || phase === 'ended') {
        // Only a meeting that was joined is left (a failed join says nothing).
        ended = true;
        if (this.joined) {
          this.event('videoConferenceLeft', { roomName: room });
          this.event('readyToClose');
        }
        queueMicrotask(() => dispose());
        return;
      }
      if (phase !== 'joined' && !this.joined) return;
      if (!this.joined) {
        this.joined = true;
        myName = displayName;
        this.event('videoConferenceJoined', { roomName: room, id, displayName });
        const queued = this.queue;
        this.queue = [];
        queueMicrotask(() => {
          for (const m of queued) this.run(s, m.name, m.args);
        });
      }
      if (displayName !== myName) {
        myName = displayName;
        this.event('displayNameChange', { id, displayname: displayName, formattedDisplayName: displayName });
      }
      // Participants as the tiles know them: presence seen, so named.
      const now = new Map<string, string>();
      for (const pid of order) {
        const p = peers.get(pid);
        if (p) now.set(pid, p.name);
      }
      for (const [pid, name] of now) {
        const before = names.get(pid);
        if (before === undefined) this.event('participantJoined', { id: pid, displayName: name, formattedDisplayName: name });
        else if (before !== name) this.event('displayNameChange', { id: pid, displayname: name, formattedDisplayName: name });
      }
      for (const pid of names.keys()) if (!now.has(pid)) this.event('participantLeft', { id: pid });
      names = now;
      if (nowAudio !== audio) this.event('audioMuteStatusChanged', { muted: nowAudio });
      if (nowVideo !== video) this.event('videoMuteStatusChanged', { muted: nowVideo });
      if (nowSharing !== sharing) this.event('screenSharingStatusChanged', { on: nowSharing });
      if (nowTile !== tile) this.event('tileViewChanged', { enabled: nowTile });
      if (nowHand !== hand) this.event('raiseHandUpdated', { id, handRaised: nowHand ? Date.now() : 0 });
      if (nowChatOpen !== chatOpen) this.event('chatUpdated', { isOpen: nowChatOpen, unreadCount: unread });
      [audio, video, sharing, tile, hand, chatOpen] = [nowAudio, nowVideo, nowSharing, nowTile, nowHand, nowChatOpen];
      for (const m of chat) {
        // Our own file is listed while it uploads: it counts once shared.
        if (seenChat.has(m.id) || (m.mine && m.progress !== undefined && m.progress < 1)) continue;
        seenChat.add(m.id);
        const privateMessage = m.privateWith !== undefined;
        // Ours from an earlier visit (the room's history): not sent now.
        if (m.mine && m.history === true) continue;
        if (m.mine) this.event('outgoingMessage', { message: m.text, privateMessage });
        else {
          const stamp = Number.isNaN(m.at.getTime()) ? undefined : m.at.toISOString();
          this.event('incomingMessage', { from: m.from, nick: m.fromName, message: m.text, privateMessage, stamp });
        }
      }
    });
  }
}

let instance: Embed | null | undefined;

/** This page is a meeting embedded through the API: its parameters, else null. */
export function embedded(): EmbedParams | null {
  return embed()?.params ?? null;
}

function embed(): Embed | null {
  if (instance !== undefined) return instance;
  instance = null;
  if (window.parent === window) return null;
  const params = parseHash(location.hash);
  if (params === null) return null;
  // Where the browser says who the parent is (Chromium, Safari), the hash
  // must say the same.
  const ancestors = location.ancestorOrigins as DOMStringList | undefined;
  if (ancestors !== undefined && ancestors.length > 0 && ancestors[0] !== params.parentOrigin) return null;
  instance = new Embed(params);
  return instance;
}

/** Tells the embedding page, when there is one, what went wrong. */
export function reportEmbedError(e: EmbedError): void {
  embed()?.error(e);
}

/** While a locked meeting asks for its password, the site may give it (`password`). */
export function embedPasswordPrompt(prompt: ((password: string) => void) | null): void {
  const e = embed();
  if (e !== null) e.passwordPrompt = prompt;
}

/** Reports this meeting to the embedding page, when there is one. */
export function attachEmbed(store: MeetingStore, room: string): void {
  embed()?.attach(store, room);
}

/** Embedded with `prejoinPageEnabled: false` and a name: join without the pre-join screen. */
export function skipsPrejoin(): boolean {
  const p = embedded();
  return p !== null && p.prejoinPageEnabled === false && p.displayName !== undefined;
}

/** In place of the pre-join screen: opens the devices as asked and joins. */
export function AutoJoin({ room, onJoin }: { room: string; onJoin: (r: PreJoinResult) => void }) {
  useEffect(() => {
    let live = true;
    const p = embedded();
    void openMedia({ audio: true, video: true }).then((m) => {
      if (!live) {
        stopStream(m.stream);
        return;
      }
      const audioMuted = p?.startWithAudioMuted === true || (m.stream?.getAudioTracks().length ?? 0) === 0;
      const videoMuted = p?.startWithVideoMuted === true || (m.stream?.getVideoTracks().length ?? 0) === 0;
      for (const tr of m.stream?.getAudioTracks() ?? []) tr.enabled = !audioMuted;
      for (const tr of m.stream?.getVideoTracks() ?? []) tr.enabled = !videoMuted;
      onJoin({ displayName: p?.displayName ?? '', stream: m.stream, audioMuted, videoMuted });
    });
    return () => {
      live = false;
    };
  }, []);
  return <Notice title={t('meeting.joining', { room })} busy />;
}
