// The bridge channel: JSON messages with a `colibriClass` over the
// WebSocket whose URL the offer's transport carries
// (`<web-socket xmlns='http://jitsi.org/protocol/colibri' url/>`).
// Reconnects with back-off until closed by us.

export interface BridgeMessage {
  colibriClass: string;
  [key: string]: unknown;
}

export interface BridgeChannelHandlers {
  onOpen(): void;
  onMessage(msg: BridgeMessage): void;
  onClose(code: number, reason: string): void;
}

/** The parts of WebSocket used, so tests can hand in a fake. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: Event) => void) | null;
  onmessage: ((ev: MessageEvent) => void) | null;
  onclose: ((ev: CloseEvent) => void) | null;
  onerror: ((ev: Event) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketFactory = (url: string) => WebSocketLike;

export interface ReceiverVideoConstraints {
  lastN?: number;
  selectedSources?: string[];
  onStageSources?: string[];
  defaultConstraints?: { maxHeight: number; maxFrameRate?: number };
  constraints?: Record<string, { maxHeight: number; maxFrameRate?: number }>;
  assumedBandwidthBps?: number;
}

const OPEN = 1;
const MAX_QUEUE = 100;

export function parseBridgeMessage(data: unknown): BridgeMessage | null {
  if (typeof data !== 'string') return null;
  let v: unknown;
  try {
    v = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const cls = (v as Record<string, unknown>).colibriClass;
  return typeof cls === 'string' ? (v as BridgeMessage) : null;
}

export class BridgeChannel {
  private ws: WebSocketLike | null = null;
  private closed = false;
  private delayMs: number;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly queue: string[] = [];
  private constraints: ReceiverVideoConstraints | null;

  constructor(
    private url: string,
    private readonly handlers: BridgeChannelHandlers,
    private readonly opts: {
      factory?: WebSocketFactory;
      minDelayMs?: number;
      maxDelayMs?: number;
      constraints?: ReceiverVideoConstraints;
    } = {},
  ) {
    this.delayMs = opts.minDelayMs ?? 1000;
    this.constraints = opts.constraints ?? null;
    this.connect();
  }

  get isOpen(): boolean {
    return this.ws?.readyState === OPEN;
  }

  get currentUrl(): string {
    return this.url;
  }

  /** A new URL (new session or transport): reconnect there. */
  setUrl(url: string): void {
    if (url === this.url) return;
    this.url = url;
    const old = this.ws;
    this.ws = null;
    if (old) {
      old.onclose = null;
      old.close(1000, 'moved');
    }
    clearTimeout(this.timer);
    this.connect();
  }

  /** Sends now, or queues until the channel (re)opens; false when dropped. */
  send(msg: BridgeMessage): boolean {
    const data = JSON.stringify(msg);
    if (this.ws && this.isOpen) {
      this.ws.send(data);
      return true;
    }
    if (this.closed || this.queue.length >= MAX_QUEUE) return false;
    this.queue.push(data);
    return true;
  }

  /** `to` is an endpoint id, or '' for everyone. */
  sendEndpointMessage(to: string, payload: unknown): boolean {
    return this.send({ colibriClass: 'EndpointMessage', to, msgPayload: payload });
  }

  /** Remembered and re-sent after every reconnect. */
  setReceiverConstraints(c: ReceiverVideoConstraints): void {
    this.constraints = c;
    if (this.isOpen) this.send({ colibriClass: 'ReceiverVideoConstraints', ...c });
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.queue.length = 0;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      ws.close(1000, 'leaving');
    }
  }

  private connect(): void {
    if (this.closed) return;
    let ws: WebSocketLike;
    try {
      ws = (this.opts.factory ?? ((u: string) => new WebSocket(u)))(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.delayMs = this.opts.minDelayMs ?? 1000;
      if (this.constraints) ws.send(JSON.stringify({ colibriClass: 'ReceiverVideoConstraints', ...this.constraints }));
      for (const data of this.queue.splice(0)) ws.send(data);
      this.handlers.onOpen();
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      const msg = parseBridgeMessage(ev.data);
      if (msg) this.handlers.onMessage(msg);
    };
    ws.onerror = () => {
      // The close event that follows says what happened.
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.handlers.onClose(ev.code, ev.reason);
      this.scheduleReconnect();
    };
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.opts.maxDelayMs ?? 60000);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
