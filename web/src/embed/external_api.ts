// `/external_api.js`: embeds a Conclave meeting in another site's page,
// in the shape of Jitsi Meet's iframe API, so that a site using
// `JitsiMeetExternalAPI` switches by changing the script's address:
//
//   const api = new ConclaveMeetExternalAPI('meet.example.org', { roomName: 'standup', parentNode: el });
//   api.on('participantJoined', (p) => console.log(p.displayName));
//   api.executeCommand('toggleAudio');
//
// Built on its own (vite.embed.config.ts) as one classic script with no
// imports at run time. It talks to the meeting page only through
// postMessage, to and from the meeting's origin alone (protocol.ts).
import { asToParent, buildHash, TAG, type EmbedParams, type ToFrame } from './protocol';

export type Listener = (data: Record<string, unknown>) => void;

export interface ExternalApiOptions {
  roomName?: string;
  /** Where the iframe goes (document.body if not given). */
  parentNode?: HTMLElement;
  /** A number of pixels, or a CSS length ('100%', '40em'); 100% by default. */
  width?: number | string;
  height?: number | string;
  userInfo?: { displayName?: string };
  configOverwrite?: {
    startWithAudioMuted?: boolean;
    startWithVideoMuted?: boolean;
    /** false: no pre-join screen; the meeting is joined at once with `userInfo.displayName`. */
    prejoinPageEnabled?: boolean;
  };
  /** Accepted for Jitsi's sake; nothing in it applies here. */
  interfaceConfigOverwrite?: unknown;
  lang?: string;
  /** Called when the iframe has loaded. */
  onload?: (ev: Event) => void;
  /** The iframe's accessible title ("Meeting <room>" by default). */
  title?: string;
}

export interface ParticipantInfo {
  participantId: string;
  displayName: string;
  formattedDisplayName: string;
}

/** What the iframe may use: devices, screen capture, full screen, copying the link. */
const ALLOW = 'camera; microphone; display-capture; autoplay; fullscreen; clipboard-write';

let nextApiId = 0;

/** Jitsi's rule: a number is pixels, a string must be a CSS length in px, em, pt or %. */
function cssSize(v: number | string | undefined): string | undefined {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return `${String(v)}px`;
  if (typeof v === 'string' && /^[0-9]*\.?[0-9]+(em|pt|px|%)$/.test(v)) return v;
  return undefined;
}

/** The meeting server's origin from Jitsi's `domain` (`host[:port]`, nothing else), or null. */
function originOf(domain: unknown): string | null {
  // Plain JavaScript callers may pass anything.
  if (typeof domain !== 'string' || domain === '' || /[/?#@\\\s]/.test(domain)) return null;
  try {
    return new URL(`https://${domain}`).origin;
  } catch {
    return null;
  }
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** `postMessage`'s options with Chromium's capability delegation (screen capture from the embedder's click). */
interface DelegatingOptions extends WindowPostMessageOptions {
  delegate?: string;
}

class ConclaveMeetExternalAPI {
  private readonly frame: HTMLIFrameElement;
  private readonly origin: string;
  private readonly apiId: string;
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly participants = new Map<string, { displayName: string; local: boolean }>();
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private queue: { msg: ToFrame; delegate: boolean }[] = [];
  private ready = false;
  private disposed = false;
  private nextReq = 1;
  private readonly onMessage = (e: MessageEvent): void => this.receive(e);

  constructor(domain: string, options: ExternalApiOptions = {}) {
    const origin = originOf(domain);
    if (origin === null) throw new Error(`ConclaveMeetExternalAPI: ${JSON.stringify(domain)} is not a host name (with an optional :port)`);
    const room = options.roomName ?? '';
    if (room === '') throw new Error('ConclaveMeetExternalAPI: roomName is required');
    this.origin = origin;
    this.apiId = String(nextApiId++);
    const params: EmbedParams = { apiId: this.apiId, parentOrigin: location.origin };
    const name = options.userInfo?.displayName;
    if (typeof name === 'string' && name !== '') params.displayName = name;
    const c = options.configOverwrite ?? {};
    if (typeof c.startWithAudioMuted === 'boolean') params.startWithAudioMuted = c.startWithAudioMuted;
    if (typeof c.startWithVideoMuted === 'boolean') params.startWithVideoMuted = c.startWithVideoMuted;
    if (typeof c.prejoinPageEnabled === 'boolean') params.prejoinPageEnabled = c.prejoinPageEnabled;
    if (typeof options.lang === 'string') params.lang = options.lang;

    const frame = document.createElement('iframe');
    frame.allow = ALLOW;
    frame.setAttribute('allowfullscreen', 'true');
    frame.name = `conclaveConferenceFrame${this.apiId}`;
    frame.id = frame.name;
    frame.title = options.title ?? `Meeting ${room}`;
    frame.style.border = '0';
    frame.style.width = cssSize(options.width) ?? '100%';
    frame.style.height = cssSize(options.height) ?? '100%';
    if (options.onload) frame.addEventListener('load', options.onload);
    frame.src = `${origin}/${encodeURIComponent(room)}${buildHash(params)}`;
    this.frame = frame;
    window.addEventListener('message', this.onMessage);
    (options.parentNode ?? document.body).appendChild(frame);
  }

  // ---------------------------------------------------------- events

  on(event: string, listener: Listener): this {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener);
    return this;
  }

  addListener(event: string, listener: Listener): this {
    return this.on(event, listener);
  }

  /** Jitsi's older name. */
  addEventListener(event: string, listener: Listener): void {
    this.on(event, listener);
  }

  /** Jitsi's older form: `{ eventName: listener, ... }`. */
  addEventListeners(listeners: Record<string, Listener>): void {
    for (const [event, l] of Object.entries(listeners)) this.on(event, l);
  }

  once(event: string, listener: Listener): this {
    const once: Listener = (data) => {
      this.off(event, once);
      listener(data);
    };
    return this.on(event, once);
  }

  off(event: string, listener: Listener): this {
    this.listeners.get(event)?.delete(listener);
    return this;
  }

  removeListener(event: string, listener: Listener): this {
    return this.off(event, listener);
  }

  /** Jitsi's older name: every listener of `event`. */
  removeEventListener(event: string): void {
    this.listeners.delete(event);
  }

  removeEventListeners(events: string[]): void {
    for (const e of events) this.listeners.delete(e);
  }

  removeAllListeners(event?: string): this {
    if (event === undefined) this.listeners.clear();
    else this.listeners.delete(event);
    return this;
  }

  private emit(event: string, data: Record<string, unknown>): void {
    for (const l of [...(this.listeners.get(event) ?? [])]) {
      try {
        l(data);
      } catch (err) {
        // One site's failing listener must not silence the others.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }

  // -------------------------------------------------------- commands

  /**
   * `displayName`, `toggleAudio`, `toggleVideo`, `toggleShareScreen`,
   * `toggleChat`, `toggleParticipantsPane`, `toggleTileView`,
   * `setTileView`, `toggleRaiseHand`, `sendChatMessage` (text, to?),
   * `hangup`. Commands sent before the meeting is joined run once it is.
   */
  executeCommand(name: string, ...args: unknown[]): void {
    // A screen picker needs a click: the embedder's, handed to the frame.
    const delegate = name === 'toggleShareScreen';
    this.send({ tag: TAG, apiId: this.apiId, kind: 'command', name, args }, delegate);
  }

  /** Jitsi's form: `{ commandName: [args...] }`. */
  executeCommands(commands: Record<string, unknown>): void {
    for (const [name, args] of Object.entries(commands)) {
      this.executeCommand(name, ...(Array.isArray(args) ? (args as unknown[]) : [args]));
    }
  }

  isAudioMuted(): Promise<boolean> {
    return this.request('isAudioMuted').then((v) => v === true);
  }

  isVideoMuted(): Promise<boolean> {
    return this.request('isVideoMuted').then((v) => v === true);
  }

  isSharingScreen(): Promise<boolean> {
    return this.request('isSharingScreen').then((v) => v === true);
  }

  /** Everyone in the meeting, this page's participant first once joined (as Jitsi's, from the events seen). */
  getParticipantsInfo(): ParticipantInfo[] {
    const out: ParticipantInfo[] = [];
    for (const [id, p] of this.participants) {
      const info = { participantId: id, displayName: p.displayName, formattedDisplayName: p.local ? `${p.displayName} (me)` : p.displayName };
      if (p.local) out.unshift(info);
      else out.push(info);
    }
    return out;
  }

  getNumberOfParticipants(): number {
    return this.participants.size;
  }

  getDisplayName(participantId: string): string | undefined {
    return this.participants.get(participantId)?.displayName;
  }

  getIFrame(): HTMLIFrameElement {
    return this.frame;
  }

  /** Removes the iframe (which leaves the meeting) and every listener. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    window.removeEventListener('message', this.onMessage);
    for (const p of this.pending.values()) p.reject(new Error('disposed'));
    this.pending.clear();
    this.queue = [];
    this.listeners.clear();
    this.participants.clear();
    this.frame.remove();
  }

  private request(name: string, ...args: unknown[]): Promise<unknown> {
    if (this.disposed) return Promise.reject(new Error('disposed'));
    const reqId = this.nextReq++;
    return new Promise((resolve, reject) => {
      this.pending.set(reqId, { resolve, reject });
      this.send({ tag: TAG, apiId: this.apiId, kind: 'request', reqId, name, args }, false);
    });
  }

  private send(msg: ToFrame, delegate: boolean): void {
    if (this.disposed) return;
    if (!this.ready) {
      this.queue.push({ msg, delegate });
      return;
    }
    const target = this.frame.contentWindow;
    if (!target) return;
    const opts: DelegatingOptions = { targetOrigin: this.origin };
    if (delegate && (navigator as Partial<Navigator>).userActivation?.isActive === true) opts.delegate = 'display-capture';
    try {
      target.postMessage(msg, opts);
    } catch {
      // A browser that knows delegation but refuses it here: send it plain.
      target.postMessage(msg, { targetOrigin: this.origin });
    }
  }

  private receive(e: MessageEvent): void {
    // Only the meeting in our own iframe, from the meeting's origin.
    if (e.source !== this.frame.contentWindow || e.origin !== this.origin) return;
    const m = asToParent(e.data, this.apiId);
    if (m === null) return;
    switch (m.kind) {
      case 'ready': {
        this.ready = true;
        const queued = this.queue;
        this.queue = [];
        for (const q of queued) this.send(q.msg, q.delegate);
        return;
      }
      case 'response': {
        const p = this.pending.get(m.reqId);
        if (!p) return;
        this.pending.delete(m.reqId);
        if (m.ok) p.resolve(m.result);
        else p.reject(new Error(m.error ?? 'failed'));
        return;
      }
      case 'event':
        this.track(m.name, m.data);
        this.emit(m.name, m.data);
    }
  }

  /** Who is in, from the events, for getParticipantsInfo (as Jitsi's API keeps it). */
  private track(name: string, data: Record<string, unknown>): void {
    const id = str(data.id);
    switch (name) {
      case 'videoConferenceJoined':
        this.participants.clear();
        this.participants.set(id, { displayName: str(data.displayName), local: true });
        break;
      case 'participantJoined':
        this.participants.set(id, { displayName: str(data.displayName), local: false });
        break;
      case 'participantLeft':
        this.participants.delete(id);
        break;
      case 'displayNameChange': {
        const p = this.participants.get(id);
        if (p) p.displayName = str(data.displayname);
        break;
      }
      case 'videoConferenceLeft':
        this.participants.clear();
        break;
    }
  }
}

declare global {
  interface Window {
    JitsiMeetExternalAPI?: typeof ConclaveMeetExternalAPI;
  }
}

// Sites written for Jitsi Meet work unchanged, unless Jitsi's own script is
// also on the page.
if (typeof window !== 'undefined') window.JitsiMeetExternalAPI ??= ConclaveMeetExternalAPI;

export default ConclaveMeetExternalAPI;
