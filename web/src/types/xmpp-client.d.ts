// Types for the parts of @xmpp/client 0.14 (which ships none) this
// library uses. Elements are ltx elements.
declare module '@xmpp/client' {
  export type XmlNode = Element | string;

  export class Element {
    constructor(name: string, attrs?: Record<string, string> | string);
    name: string;
    attrs: Record<string, string | undefined>;
    children: XmlNode[];
    parent: Element | null;
    is(name: string, xmlns?: string): boolean;
    getName(): string;
    getNS(): string | undefined;
    getAttr(name: string): string | undefined;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildElements(): Element[];
    getText(): string;
    getChildText(name: string, xmlns?: string): string | null;
    c(name: string, attrs?: Record<string, string>): Element;
    t(text: string): Element;
    up(): Element;
    root(): Element;
    append(...nodes: XmlNode[]): void;
    remove(el: Element | string, xmlns?: string): Element;
    toString(): string;
  }

  export class Parser {
    write(data: string): void;
    end(data?: string): void;
    on(event: 'start' | 'element', cb: (el: Element) => void): void;
    on(event: 'error', cb: (err: Error) => void): void;
  }

  type Attrs = Record<string, string | number | undefined | null>;
  type Child = Element | string | null | undefined | false | Child[];

  interface XmlFunction {
    (name: string, attrs?: Attrs | null, ...children: Child[]): Element;
    Element: typeof Element;
    Parser: typeof Parser;
  }
  export const xml: XmlFunction;

  export interface JID {
    local: string;
    domain: string;
    resource: string;
    bare(): JID;
    toString(): string;
  }
  export function jid(s: string): JID;

  export interface IncomingContext {
    stanza: Element;
    element: Element;
    from: JID | null;
    id: string;
    type: string;
  }

  export interface XmppClientOptions {
    service: string;
    domain: string;
    resource?: string;
    username?: string;
    password?: string;
  }

  export interface StanzaErrorLike extends Error {
    condition: string;
    text?: string;
    element?: Element;
  }

  export interface XmppClient {
    status: string;
    jid?: JID;
    start(): Promise<JID>;
    stop(): Promise<void>;
    send(el: Element): Promise<void>;
    on(event: 'stanza', cb: (el: Element) => void): void;
    on(event: 'online', cb: (jid: JID) => void): void;
    on(event: 'offline' | 'disconnect', cb: () => void): void;
    on(event: 'error', cb: (err: Error) => void): void;
    on(event: 'status', cb: (status: string) => void): void;
    removeAllListeners(event?: string): void;
    removeListener(event: 'stanza', cb: (el: Element) => void): void;
    iqCaller: {
      request(el: Element, timeout?: number): Promise<Element>;
    };
    iqCallee: {
      set(ns: string, name: string, handler: (ctx: IncomingContext) => unknown): void;
      get(ns: string, name: string, handler: (ctx: IncomingContext) => unknown): void;
    };
    reconnect: { stop(): void };
    /** XEP-0198: `resumed` fires when a dropped stream was resumed (no new `online`). */
    streamManagement: { id: string; on(event: 'resumed', cb: () => void): void };
  }

  export function client(options: XmppClientOptions): XmppClient;
}
