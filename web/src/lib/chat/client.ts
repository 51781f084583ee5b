// A signed-in user's chat session: the roster with presence and
// subscriptions, one-to-one and group conversations (rooms kept as
// XEP-0402 bookmarks), archives and search, and files. The page keeps the
// state; this speaks the protocol.
import { client, xml, type Element, type XmppClient } from '@xmpp/client';
import type { MeetConfig } from '../config';
import { Emitter } from '../emitter';
import { NS_MUC, NS_MUC_USER } from '../ns';
import { uploadFile } from '../upload';
import {
  NS_BOOKMARKS,
  NS_CARBONS,
  NS_PUBSUB_EVENT,
  NS_ROSTER,
  archiveFin,
  archiveQuery,
  archiveResult,
  bare,
  chatMessage,
  correction,
  directInvite,
  fetchBookmarks,
  groupConfig,
  memberAffiliations,
  newId,
  parseBookmarks,
  parseChat,
  parseDirectInvite,
  parseRosterItems,
  publishBookmark,
  reactionsMessage,
  resourceOf,
  retraction,
  rosterSet,
  unwrapCarbon,
  type Bookmark,
  type ChatEvent,
  type ChatItem,
  type OutgoingOptions,
  type RosterItem,
} from './stanzas';

export type Show = 'available' | 'away' | 'dnd' | 'offline';

export interface ChatClientEvents {
  status: 'online' | 'reconnecting';
  roster: RosterItem[];
  presence: { jid: string; show: Show };
  'subscription-request': { jid: string };
  chat: ChatEvent;
  bookmarks: Bookmark[];
  invite: { room: string; from: string; reason: string };
  /** A room let us in (or not: `error`). */
  room: { jid: string; joined: boolean; error?: string };
}

/** Why signing in failed, for the page to say. */
export class SignInError extends Error {
  constructor(
    readonly reason: 'credentials' | 'unreachable',
    message: string,
  ) {
    super(message);
    this.name = 'SignInError';
  }
}

export interface Credentials {
  username: string;
  password: string;
}

export interface HistoryPage {
  events: ChatEvent[];
  /** The archive has nothing older. */
  complete: boolean;
  /** The oldest archive id on this page, for the next one back. */
  first?: string;
}

const IQ_TIMEOUT_MS = 15000;

/** `alice` or `alice@host` as a localpart of `domain`; null when it names another server. */
export function localpartOf(input: string, domain: string): string | null {
  const s = input.trim();
  const at = s.lastIndexOf('@');
  if (at < 0) return s === '' ? null : s.toLowerCase();
  if (s.slice(at + 1).toLowerCase() !== domain.toLowerCase()) return null;
  const local = s.slice(0, at);
  return local === '' ? null : local.toLowerCase();
}

export class ChatClient extends Emitter<ChatClientEvents> {
  readonly me: string;
  readonly roster = new Map<string, RosterItem>();
  /** Each contact's resources and their show. */
  private readonly resources = new Map<string, Map<string, Show>>();
  readonly pendingRequests = new Set<string>();
  /** Our nick in each joined room. */
  readonly nicks = new Map<string, string>();
  /** Each room's occupants: nick to bare JID (rooms where members see JIDs). */
  readonly occupants = new Map<string, Map<string, string>>();
  bookmarks: Bookmark[] = [];

  private constructor(
    private readonly xmpp: XmppClient,
    readonly config: MeetConfig,
    me: string,
  ) {
    super();
    this.me = me;
  }

  /** Signs in with a password over the server's WebSocket. */
  static async signIn(config: MeetConfig, creds: Credentials): Promise<ChatClient> {
    const local = localpartOf(creds.username, config.domain);
    if (local === null) throw new SignInError('credentials', `Use your account on ${config.domain}`);
    const xmpp = client({ service: config.websocket, domain: config.domain, username: local, password: creds.password });
    xmpp.on('error', (err) => console.warn('xmpp error', err.message));
    let chat: ChatClient | null = null;
    const early: Element[] = [];
    xmpp.on('stanza', (el) => (chat !== null ? chat.onStanza(el) : early.push(el)));
    try {
      const jid = await xmpp.start();
      chat = new ChatClient(xmpp, config, bare(jid.toString()));
    } catch (err) {
      xmpp.reconnect.stop();
      await xmpp.stop().catch(() => undefined);
      const condition = (err as { condition?: unknown }).condition;
      if (condition === 'not-authorized' || condition === 'account-disabled' || (err as Error).name === 'SASLError') {
        throw new SignInError('credentials', 'The username or password is wrong');
      }
      throw new SignInError('unreachable', err instanceof Error ? err.message : String(err));
    }
    const c = chat;
    xmpp.on('disconnect', () => c.emit('status', 'reconnecting'));
    xmpp.streamManagement.on('resumed', () => c.emit('status', 'online'));
    // A reconnect that could not resume is a new session: say who we are again.
    xmpp.on('online', () => void c.start().then(() => c.emit('status', 'online')));
    xmpp.iqCallee.set(NS_ROSTER, 'query', (ctx) => c.onRosterPush(ctx.from?.toString() ?? null, ctx.element));
    for (const el of early) c.onStanza(el);
    await c.start();
    return c;
  }

  /** What every new session does: roster, carbons, presence, rooms. */
  private async start(): Promise<void> {
    const roster = await this.xmpp.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: NS_ROSTER })), IQ_TIMEOUT_MS);
    this.roster.clear();
    for (const i of parseRosterItems(roster.getChild('query', NS_ROSTER))) this.roster.set(i.jid, i);
    this.emit('roster', [...this.roster.values()]);
    await this.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('enable', { xmlns: NS_CARBONS })), IQ_TIMEOUT_MS).catch(() => undefined);
    await this.xmpp.send(xml('presence'));
    await this.loadBookmarks();
    for (const b of this.bookmarks) if (b.autojoin) void this.joinRoom(b.jid, b.nick);
  }

  get localpart(): string {
    return this.me.slice(0, this.me.indexOf('@'));
  }

  showOf(jid: string): Show {
    const res = this.resources.get(jid);
    if (res === undefined || res.size === 0) return 'offline';
    const shows = [...res.values()];
    if (shows.includes('available')) return 'available';
    if (shows.includes('dnd')) return 'dnd';
    return 'away';
  }

  private onRosterPush(from: string | null, query: Element): Element {
    // Only our own server may push (RFC 6121 §2.1.6).
    if (from !== null && bare(from) !== this.me && from !== this.me.split('@')[1]) throw new Error('not-allowed');
    for (const i of parseRosterItems(query)) {
      if (i.subscription === 'remove') this.roster.delete(i.jid);
      else this.roster.set(i.jid, i);
    }
    this.emit('roster', [...this.roster.values()]);
    return xml('query', { xmlns: NS_ROSTER });
  }

  private onStanza(raw: Element): void {
    if (raw.is('presence')) return this.onPresence(raw);
    if (!raw.is('message')) return;
    const event = raw.getChild('event', NS_PUBSUB_EVENT);
    if (event !== undefined && bare(raw.attrs.from ?? this.me) === this.me) {
      if (event.getChild('items')?.attrs.node === NS_BOOKMARKS) void this.loadBookmarks();
      return;
    }
    const el = unwrapCarbon(raw, this.me);
    if (el === null) return;
    const invite = parseDirectInvite(el);
    if (invite !== null) {
      // Only from people we know: a stranger's invitation is spam's way in.
      if (this.roster.has(invite.from)) this.emit('invite', invite);
      return;
    }
    const ev = parseChat(el, this.me, this.nicks, Date.now());
    if (ev === null) return;
    if (ev.kind === 'message' && ev.item.groupchat) ev.item.outgoing ||= this.isMine(ev.item.conversation, ev.item.sender);
    this.emit('chat', ev);
  }

  /** Whether a room occupant is us (another of our sessions, such as a meeting's). */
  isMine(room: string, nick: string): boolean {
    return this.nicks.get(room) === nick || this.occupants.get(room)?.get(nick) === this.me;
  }

  private onPresence(p: Element): void {
    const from = p.attrs.from ?? '';
    const who = bare(from);
    const type = p.attrs.type;
    const x = p.getChild('x', NS_MUC_USER);
    if (x !== undefined) {
      const nick = resourceOf(from);
      let occ = this.occupants.get(who);
      if (occ === undefined) {
        occ = new Map();
        this.occupants.set(who, occ);
      }
      const jid = x.getChild('item')?.attrs.jid;
      if (type === 'unavailable') occ.delete(nick);
      else occ.set(nick, jid !== undefined ? bare(jid) : '');
      const self = x.getChildren('status').some((s) => s.attrs.code === '110');
      if (self) this.emit('room', { jid: who, joined: type !== 'unavailable' });
      return;
    }
    if (type === 'error' && this.nicks.has(who)) {
      const condition = p.getChild('error')?.getChildElements()[0]?.name ?? 'error';
      this.nicks.delete(who);
      this.emit('room', { jid: who, joined: false, error: condition });
      return;
    }
    if (type === 'subscribe') {
      const item = this.roster.get(who);
      // Already theirs to see (we asked them first): agree without asking.
      if (item?.pending === true || item?.subscription === 'to') {
        void this.xmpp.send(xml('presence', { to: who, type: 'subscribed' }));
        return;
      }
      this.pendingRequests.add(who);
      this.emit('subscription-request', { jid: who });
      return;
    }
    if (type === 'subscribed' || type === 'unsubscribed' || type === 'unsubscribe') return;
    if (type !== undefined && type !== 'unavailable') return;
    let res = this.resources.get(who);
    if (res === undefined) {
      res = new Map();
      this.resources.set(who, res);
    }
    const resource = resourceOf(from);
    if (type === 'unavailable') res.delete(resource);
    else {
      const show = p.getChildText('show');
      res.set(resource, show === 'dnd' ? 'dnd' : show === 'away' || show === 'xa' ? 'away' : 'available');
    }
    this.emit('presence', { jid: who, show: this.showOf(who) });
  }

  /** Adds a contact and asks to see their presence (they are asked to agree). */
  async addContact(jid: string, name: string): Promise<void> {
    const j = bare(jid);
    await this.xmpp.iqCaller.request(rosterSet(j, name), IQ_TIMEOUT_MS);
    await this.xmpp.send(xml('presence', { to: j, type: 'subscribe' }));
  }

  async removeContact(jid: string): Promise<void> {
    await this.xmpp.iqCaller.request(rosterSet(jid, null), IQ_TIMEOUT_MS);
  }

  /** Agrees to a request, and asks for theirs in return (mutual, as people expect). */
  async acceptSubscription(jid: string): Promise<void> {
    this.pendingRequests.delete(jid);
    await this.xmpp.send(xml('presence', { to: jid, type: 'subscribed' }));
    const item = this.roster.get(jid);
    if (item === undefined || (item.subscription !== 'to' && item.subscription !== 'both' && !item.pending)) {
      await this.xmpp.send(xml('presence', { to: jid, type: 'subscribe' }));
    }
  }

  async declineSubscription(jid: string): Promise<void> {
    this.pendingRequests.delete(jid);
    await this.xmpp.send(xml('presence', { to: jid, type: 'unsubscribed' }));
  }

  /** Sends a message; resolves with its id. */
  async send(o: Omit<OutgoingOptions, 'nick'>): Promise<string> {
    const { el, id } = chatMessage(o);
    await this.xmpp.send(el);
    return id;
  }

  async edit(to: string, groupchat: boolean, target: string, text: string): Promise<void> {
    await this.xmpp.send(correction(to, groupchat, target, text));
  }

  async retract(to: string, groupchat: boolean, target: string): Promise<void> {
    await this.xmpp.send(retraction(to, groupchat, target));
  }

  async react(to: string, groupchat: boolean, target: string, emojis: string[]): Promise<void> {
    await this.xmpp.send(reactionsMessage(to, groupchat, target, emojis));
  }

  /** One archive page, oldest first: our archive with `conversation`, or a room's. */
  async history(conversation: string, groupchat: boolean, before = '', max = 50): Promise<HistoryPage> {
    return this.archivePage({
      queryId: newId(),
      ...(groupchat ? { archive: conversation } : { with: conversation }),
      before,
      max,
    });
  }

  private async archivePage(q: Parameters<typeof archiveQuery>[0]): Promise<HistoryPage> {
    const events: ChatEvent[] = [];
    const collect = (el: Element) => {
      const r = archiveResult(el, q.queryId);
      if (r === null) return;
      // Results for a room come from the room, ours from our own JID.
      const from = bare(el.attrs.from ?? this.me);
      if (from !== (q.archive ?? this.me)) return;
      const ev = parseChat(r.message, this.me, this.nicks, r.stamp, { id: r.id, stamp: r.stamp });
      if (ev === null) return;
      if (ev.kind === 'message' && ev.item.groupchat) ev.item.outgoing ||= this.isMine(ev.item.conversation, ev.item.sender);
      events.push(ev);
    };
    this.xmpp.on('stanza', collect);
    try {
      const fin = archiveFin(await this.xmpp.iqCaller.request(archiveQuery(q), IQ_TIMEOUT_MS));
      return { events, ...fin };
    } finally {
      this.xmpp.removeListener('stanza', collect);
    }
  }

  /** The newest messages of our own archive, whoever they were with (the conversation list's previews). */
  recent(max = 40): Promise<HistoryPage> {
    return this.archivePage({ queryId: newId(), before: '', max });
  }

  /** Messages with `text` in our archive and in each of `rooms`' archives, newest first. */
  async search(text: string, rooms: string[], max = 50): Promise<ChatItem[]> {
    const pages = await Promise.all([
      this.archivePage({ queryId: newId(), text, before: '', max }),
      ...rooms.map((r) => this.archivePage({ queryId: newId(), archive: r, text, before: '', max }).catch(() => ({ events: [], complete: true }))),
    ]);
    return pages
      .flatMap((p) => p.events)
      .flatMap((e) => (e.kind === 'message' && !e.item.retracted ? [e.item] : []))
      .sort((a, b) => b.stamp - a.stamp);
  }

  async loadBookmarks(): Promise<Bookmark[]> {
    try {
      const res = await this.xmpp.iqCaller.request(fetchBookmarks(), IQ_TIMEOUT_MS);
      this.bookmarks = parseBookmarks(res.getChild('pubsub')?.getChild('items'));
    } catch {
      // No node yet: no groups.
      this.bookmarks = [];
    }
    this.emit('bookmarks', this.bookmarks);
    return this.bookmarks;
  }

  async addBookmark(b: Bookmark): Promise<void> {
    await this.xmpp.iqCaller.request(publishBookmark(b), IQ_TIMEOUT_MS);
    this.bookmarks = [...this.bookmarks.filter((x) => x.jid !== b.jid), b];
    this.emit('bookmarks', this.bookmarks);
  }

  /** Enters a room without its in-room history (the archive has it). */
  async joinRoom(room: string, nick = this.localpart): Promise<void> {
    this.nicks.set(room, nick);
    await this.xmpp.send(
      xml('presence', { to: `${room}/${nick}` }, xml('x', { xmlns: NS_MUC }, xml('history', { maxstanzas: '0' }))),
    );
  }

  /**
   * A new group: a kept, members-only, archived room under a random name,
   * its members made members and invited, and a bookmark of it.
   */
  async createGroup(name: string, members: string[]): Promise<string> {
    const room = await this.createRoom('g', name, members);
    await this.addBookmark({ jid: room, name, autojoin: true, nick: this.localpart });
    for (const m of members) await this.xmpp.send(directInvite(m, room, name));
    return room;
  }

  /**
   * A room for a call with one contact: kept, members-only and archived
   * like a group's, so that the call's chat stays readable to the two of
   * them (and nobody else) afterwards; we leave it at once, as the call is
   * held by the meeting page. Its name is random: nobody can take it first.
   */
  async createCallRoom(peer: string, name: string): Promise<string> {
    const room = await this.createRoom('c', name, [peer]);
    this.nicks.delete(room);
    await this.xmpp.send(xml('presence', { to: `${room}/${this.localpart}`, type: 'unavailable' }));
    return room;
  }

  /** A new kept, members-only, archived room under a random name, with `members` as its members. */
  private async createRoom(prefix: string, name: string, members: string[]): Promise<string> {
    const room = `${prefix}-${newId().replace(/-/g, '').slice(0, 16)}@${this.config.muc}`;
    const joined = new Promise<void>((resolve, reject) => {
      const off = this.on('room', (r) => {
        if (r.jid !== room) return;
        off();
        if (r.joined) resolve();
        else reject(new Error(r.error ?? 'could not create the room'));
      });
    });
    await this.joinRoom(room);
    await joined;
    await this.xmpp.iqCaller.request(groupConfig(room, name), IQ_TIMEOUT_MS);
    if (members.length > 0) await this.xmpp.iqCaller.request(memberAffiliations(room, members), IQ_TIMEOUT_MS);
    return room;
  }

  /** Takes a contact's invitation: a bookmark (so every device of ours has it) and the room. */
  async acceptInvite(room: string, name: string): Promise<void> {
    await this.addBookmark({ jid: room, name, autojoin: true, nick: this.localpart });
    await this.joinRoom(room);
  }

  uploadFile(file: File, onProgress: (fraction: number) => void, signal?: AbortSignal): Promise<string> {
    return uploadFile(this.xmpp, `upload.${this.config.domain}`, file, onProgress, signal);
  }

  async close(): Promise<void> {
    this.xmpp.reconnect.stop();
    await this.xmpp.send(xml('presence', { type: 'unavailable' })).catch(() => undefined);
    await this.xmpp.stop().catch(() => undefined);
  }
}
