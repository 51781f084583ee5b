import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BridgeChannel, parseBridgeMessage, type BridgeMessage, type WebSocketLike } from '../src/lib/bridge-channel';

class FakeSocket implements WebSocketLike {
  readyState = 0;
  onopen: ((ev: Event) => void) | null = null;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;
  sent: unknown[] = [];
  closedWith: number | undefined;
  constructor(readonly url: string) {}
  send(data: string): void {
    this.sent.push(JSON.parse(data));
  }
  close(code?: number): void {
    this.closedWith = code;
    this.readyState = 3;
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.({} as Event);
  }
  receive(data: string): void {
    this.onmessage?.({ data } as MessageEvent);
  }
  drop(code: number): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: 'gone' } as CloseEvent);
  }
}

describe('BridgeChannel', () => {
  let sockets: FakeSocket[];
  let events: string[];
  let messages: BridgeMessage[];
  const handlers = {
    onOpen: () => events.push('open'),
    onClose: (code: number) => events.push(`close ${String(code)}`),
    onMessage: (m: BridgeMessage) => messages.push(m),
  };
  const factory = (url: string) => {
    const s = new FakeSocket(url);
    sockets.push(s);
    return s;
  };
  const last = () => {
    const s = sockets[sockets.length - 1];
    if (!s) throw new Error('no socket');
    return s;
  };

  beforeEach(() => {
    vi.useFakeTimers();
    sockets = [];
    events = [];
    messages = [];
  });
  afterEach(() => vi.useRealTimers());

  it('queues until open, then sends constraints and the queue', () => {
    const ch = new BridgeChannel('wss://b/colibri-ws/x', handlers, {
      factory,
      constraints: { lastN: -1, defaultConstraints: { maxHeight: 720 } },
    });
    expect(ch.sendEndpointMessage('', { hello: 1 })).toBe(true);
    expect(last().sent).toEqual([]);
    last().open();
    expect(events).toEqual(['open']);
    expect(last().sent).toEqual([
      { colibriClass: 'ReceiverVideoConstraints', lastN: -1, defaultConstraints: { maxHeight: 720 } },
      { colibriClass: 'EndpointMessage', to: '', msgPayload: { hello: 1 } },
    ]);
    ch.sendEndpointMessage('b0b0b0b0', { x: 'y' });
    expect(last().sent[2]).toEqual({ colibriClass: 'EndpointMessage', to: 'b0b0b0b0', msgPayload: { x: 'y' } });
  });

  it('hands on messages with a colibriClass, drops the rest', () => {
    new BridgeChannel('wss://b/x', handlers, { factory });
    last().open();
    last().receive('{"colibriClass":"EndpointMessage","from":"b0b0b0b0","msgPayload":{"a":1}}');
    last().receive('not json');
    last().receive('{"no":"class"}');
    last().receive('[1]');
    expect(messages).toEqual([{ colibriClass: 'EndpointMessage', from: 'b0b0b0b0', msgPayload: { a: 1 } }]);
    expect(parseBridgeMessage(42)).toBeNull();
  });

  it('reconnects with back-off until closed by us', () => {
    const ch = new BridgeChannel('wss://b/x', handlers, { factory, minDelayMs: 100, maxDelayMs: 400 });
    last().open();
    last().drop(1006);
    expect(events).toEqual(['open', 'close 1006']);
    expect(sockets).toHaveLength(1);
    vi.advanceTimersByTime(100);
    expect(sockets).toHaveLength(2);
    last().drop(1006);
    vi.advanceTimersByTime(150);
    expect(sockets).toHaveLength(2);
    vi.advanceTimersByTime(50);
    expect(sockets).toHaveLength(3);
    last().drop(1006);
    vi.advanceTimersByTime(400);
    expect(sockets).toHaveLength(4);
    last().drop(1006);
    vi.advanceTimersByTime(400);
    expect(sockets).toHaveLength(5);
    // After a successful open the delay starts over.
    last().open();
    last().drop(1001);
    vi.advanceTimersByTime(100);
    expect(sockets).toHaveLength(6);
    ch.close();
    expect(last().closedWith).toBe(1000);
    vi.advanceTimersByTime(10000);
    expect(sockets).toHaveLength(6);
    expect(ch.sendEndpointMessage('', {})).toBe(false);
  });

  it('moves to a new URL', () => {
    const ch = new BridgeChannel('wss://b/one', handlers, { factory });
    last().open();
    ch.setUrl('wss://b/two');
    expect(sockets.map((s) => s.url)).toEqual(['wss://b/one', 'wss://b/two']);
    expect(sockets[0]?.closedWith).toBe(1000);
    expect(events).toEqual(['open']);
  });
});
