// The chat as the page shows it: signals fed by the ChatClient's events,
// so components read state and never the protocol. One store per signed-in
// tab.
import { batch, computed, signal } from '@preact/signals';
import {
  ChatClient,
  UploadError,
  type Bookmark,
  type ChatEvent,
  type ChatItem,
  type Credentials,
  type MeetConfig,
  type RosterItem,
  type Show,
} from '../../lib';
import { uploadMessage } from '../files';
import { t } from '../i18n';
import { meetingLink, newMeetingName } from '../route';
import { saveCredentials } from '../session';
import { applyEvent, applyPage, emptyConversation, referenceId, toggledReactions, type Conversation } from './model';

export interface Contact extends RosterItem {
  show: Show;
}

export interface PendingUpload {
  key: string;
  conversation: string;
  name: string;
  progress: number;
  error?: string;
}

export interface Invite {
  room: string;
  from: string;
  reason: string;
}

const MUTED_KEY = 'conclave.mutedConversations';
const PAGE = 50;
/** How many of a conversation's calls show their chat in it (the newest). */
const MAX_CALL_ROOMS = 10;

function loadMuted(): Set<string> {
  try {
    const v = JSON.parse(localStorage.getItem(MUTED_KEY) ?? '[]') as unknown;
    return new Set(Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  } catch {
    return new Set();
  }
}

export class ChatStore {
  readonly status = signal<'online' | 'reconnecting' | 'signed-out'>('online');
  readonly contacts = signal<ReadonlyMap<string, Contact>>(new Map());
  readonly requests = signal<readonly string[]>([]);
  readonly groups = signal<readonly Bookmark[]>([]);
  readonly conversations = signal<ReadonlyMap<string, Conversation>>(new Map());
  readonly active = signal<string | null>(null);
  readonly invites = signal<readonly Invite[]>([]);
  readonly muted = signal<ReadonlySet<string>>(loadMuted());
  readonly uploads = signal<readonly PendingUpload[]>([]);
  /** Conversations whose earlier page is on its way. */
  readonly loadingEarlier = signal<ReadonlySet<string>>(new Set());
  readonly search = signal<{ text: string; results: readonly ChatItem[] | null } | null>(null);
  readonly notificationsAllowed = signal(typeof Notification !== 'undefined' && Notification.permission === 'granted');
  readonly totalUnread = computed(() => [...this.conversations.value.values()].reduce((n, c) => n + (this.muted.value.has(c.jid) ? 0 : c.unread), 0));

  private constructor(readonly client: ChatClient) {}

  static async signIn(config: MeetConfig, creds: Credentials): Promise<ChatStore> {
    const client = await ChatClient.signIn(config, creds);
    // As the server knows the account: a meeting in this tab signs in with it.
    saveCredentials({ username: client.localpart, password: creds.password });
    const store = new ChatStore(client);
    store.listen();
    store.syncRoster(client);
    store.groups.value = client.bookmarks;
    for (const b of client.bookmarks) store.ensure(b.jid, true);
    // The newest of our archive: which one-to-one conversations there were, and their last words.
    void client.recent().then((page) => store.mergePage(page.events, null));
    // Each group's last word (a group's messages are in its own archive).
    for (const b of client.bookmarks) {
      void client.history(b.jid, true, '', 1).then(
        (page) => store.mergePage(page.events, null),
        () => undefined,
      );
    }
    return store;
  }

  get me(): string {
    return this.client.me;
  }

  private listen(): void {
    const c = this.client;
    c.on('status', (s) => (this.status.value = s));
    c.on('roster', () => this.syncRoster(c));
    c.on('presence', ({ jid, show }) => {
      const old = this.contacts.value.get(jid);
      if (old === undefined) return;
      const next = new Map(this.contacts.value);
      next.set(jid, { ...old, show });
      this.contacts.value = next;
    });
    c.on('subscription-request', ({ jid }) => {
      if (!this.requests.value.includes(jid)) this.requests.value = [...this.requests.value, jid];
    });
    c.on('bookmarks', (b) => {
      batch(() => {
        this.groups.value = b;
        for (const g of b) this.ensure(g.jid, true);
      });
    });
    c.on('invite', (inv) => {
      if (this.groups.value.some((g) => g.jid === inv.room)) return;
      if (!this.invites.value.some((i) => i.room === inv.room)) this.invites.value = [...this.invites.value, inv];
    });
    c.on('chat', (ev) => this.onLive(ev));
  }

  private syncRoster(c: ChatClient): void {
    const next = new Map<string, Contact>();
    for (const i of c.roster.values()) next.set(i.jid, { ...i, show: c.showOf(i.jid) });
    batch(() => {
      this.contacts.value = next;
      for (const jid of next.keys()) this.ensure(jid, false);
      this.requests.value = [...c.pendingRequests];
    });
  }

  private ensure(jid: string, groupchat: boolean): Conversation {
    const have = this.conversations.value.get(jid);
    if (have !== undefined) return have;
    const conv = emptyConversation(jid, groupchat);
    const next = new Map(this.conversations.value);
    next.set(jid, conv);
    this.conversations.value = next;
    return conv;
  }

  private update(jid: string, groupchat: boolean, f: (c: Conversation) => Conversation): void {
    const c = this.ensure(jid, groupchat);
    const next = new Map(this.conversations.value);
    next.set(jid, f(c));
    this.conversations.value = next;
  }

  private mergePage(events: readonly ChatEvent[], loaded: { jid: string; complete: boolean; first?: string } | null): void {
    batch(() => {
      const by = new Map<string, ChatEvent[]>();
      for (const ev of events) {
        const jid = ev.kind === 'message' ? ev.item.conversation : ev.conversation;
        by.set(jid, [...(by.get(jid) ?? []), ev]);
      }
      if (loaded !== null && !by.has(loaded.jid)) by.set(loaded.jid, []);
      for (const [jid, evs] of by) {
        const groupchat = evs.some((e) => e.kind === 'message' && e.item.groupchat) || this.groups.value.some((g) => g.jid === jid);
        this.update(jid, groupchat, (c) => {
          const out = { ...c, ...applyPage(c.items, evs, c.orphans) };
          if (loaded?.jid === jid) {
            out.loaded = true;
            out.complete = loaded.complete;
            if (loaded.first !== undefined) out.oldest = loaded.first;
          }
          return out;
        });
      }
    });
  }

  private onLive(ev: ChatEvent): void {
    const jid = ev.kind === 'message' ? ev.item.conversation : ev.conversation;
    const groupchat = ev.kind === 'message' ? ev.item.groupchat : this.groups.value.some((g) => g.jid === jid);
    // A room we are not in the list of (left, or a stranger's): not ours to show.
    if (groupchat && !this.groups.value.some((g) => g.jid === jid)) return;
    const viewing = this.active.value === jid && document.visibilityState === 'visible';
    const fresh = ev.kind === 'message' && !ev.item.outgoing;
    this.update(jid, groupchat, (c) => ({
      ...c,
      items: applyEvent(c.items, ev),
      unread: fresh && !viewing ? c.unread + 1 : c.unread,
    }));
    if (fresh && !viewing) this.notify(ev.item);
  }

  private notify(item: ChatItem): void {
    if (this.muted.value.has(item.conversation) || !this.notificationsAllowed.value || typeof Notification === 'undefined') return;
    try {
      const n = new Notification(this.nameOf(item.conversation), {
        body: item.file !== undefined ? t('chatApp.sentFile') : item.text.slice(0, 200),
        tag: item.conversation,
      });
      n.onclick = () => {
        window.focus();
        void this.open(item.conversation);
      };
    } catch {
      // Some browsers allow notifications only from a service worker.
    }
  }

  async enableNotifications(): Promise<void> {
    if (typeof Notification === 'undefined') return;
    const p = await Notification.requestPermission();
    this.notificationsAllowed.value = p === 'granted';
  }

  toggleMute(jid: string): void {
    const next = new Set(this.muted.value);
    if (next.has(jid)) next.delete(jid);
    else next.add(jid);
    this.muted.value = next;
    try {
      localStorage.setItem(MUTED_KEY, JSON.stringify([...next]));
    } catch {
      // Kept for this visit only.
    }
  }

  nameOf(jid: string): string {
    const g = this.groups.value.find((x) => x.jid === jid);
    if (g !== undefined) return g.name !== '' ? g.name : jid.split('@')[0] ?? jid;
    const c = this.contacts.value.get(jid);
    if (c !== undefined && c.name !== '') return c.name;
    return jid.split('@')[0] ?? jid;
  }

  /** Who wrote a message, as the page names them. */
  senderName(item: ChatItem): string {
    if (item.outgoing) return t('chat.you');
    if (item.groupchat) return item.nick ?? item.sender;
    return this.nameOf(item.sender);
  }

  isGroup(jid: string): boolean {
    return this.groups.value.some((g) => g.jid === jid);
  }

  async open(jid: string): Promise<void> {
    const groupchat = this.isGroup(jid);
    batch(() => {
      this.active.value = jid;
      this.search.value = null;
      this.update(jid, groupchat, (c) => ({ ...c, unread: 0 }));
    });
    const c = this.conversations.value.get(jid);
    if (c !== undefined && !c.loaded) {
      const page = await this.client.history(jid, groupchat, '', PAGE);
      this.mergePage(page.events, { jid, complete: page.complete, ...(page.first !== undefined ? { first: page.first } : {}) });
    }
    if (!groupchat) await this.loadCallChats(jid);
  }

  /**
   * Reads the page before a conversation's oldest message. A scroll asks
   * many times a second near the top: while a page is on its way, that
   * is the answer, not a second query for the same page.
   */
  async loadEarlier(jid: string): Promise<void> {
    const c = this.conversations.value.get(jid);
    if (c === undefined || c.complete || this.loadingEarlier.value.has(jid)) return;
    this.loadingEarlier.value = new Set([...this.loadingEarlier.value, jid]);
    try {
      const page = await this.client.history(jid, c.groupchat, c.oldest ?? '', PAGE);
      this.mergePage(page.events, { jid, complete: page.complete, ...(page.first !== undefined ? { first: page.first } : {}) });
    } finally {
      const rest = new Set(this.loadingEarlier.value);
      rest.delete(jid);
      this.loadingEarlier.value = rest;
    }
  }

  async send(jid: string, text: string, replyTo?: ChatItem): Promise<void> {
    const groupchat = this.isGroup(jid);
    const reply =
      replyTo !== undefined
        ? {
            id: referenceId(replyTo),
            quote: replyTo.text.slice(0, 200),
            ...(replyTo.groupchat ? { to: `${jid}/${replyTo.sender}` } : { to: replyTo.sender }),
          }
        : undefined;
    const id = await this.client.send({ to: jid, groupchat, text, ...(reply !== undefined ? { replyTo: reply } : {}) });
    // A room echoes our message back; a one-to-one conversation does not.
    if (!groupchat) this.addOwn(jid, id, text, reply);
  }

  private addOwn(
    jid: string,
    id: string,
    text: string,
    reply?: { id: string; quote: string; to?: string },
    file?: { url: string; name: string },
    call?: string,
  ): void {
    const item: ChatItem = { conversation: jid, groupchat: false, sender: this.me, outgoing: true, id, text, stamp: Date.now() };
    if (reply !== undefined) item.reply = { id: reply.id, quote: reply.quote };
    if (file !== undefined) item.file = file;
    if (call !== undefined) item.call = call;
    this.update(jid, false, (c) => ({ ...c, items: applyEvent(c.items, { kind: 'message', item }) }));
  }

  async edit(item: ChatItem, text: string): Promise<void> {
    const jid = item.conversation;
    await this.client.edit(jid, item.groupchat, item.id, text);
    if (!item.groupchat) this.update(jid, false, (c) => ({ ...c, items: applyEvent(c.items, { kind: 'correction', conversation: jid, sender: item.sender, target: item.id, text, id: '' }) }));
  }

  async retract(item: ChatItem): Promise<void> {
    const jid = item.conversation;
    await this.client.retract(jid, item.groupchat, item.id);
    if (!item.groupchat) this.update(jid, false, (c) => ({ ...c, items: applyEvent(c.items, { kind: 'retraction', conversation: jid, sender: item.sender, target: item.id }) }));
  }

  async react(item: ChatItem, emoji: string): Promise<void> {
    const jid = item.conversation;
    // In a room, we are our nick there; one-to-one, our bare JID.
    const me = item.groupchat ? (this.client.nicks.get(jid) ?? this.client.localpart) : this.me;
    const emojis = toggledReactions(item, me, emoji);
    const target = referenceId(item);
    await this.client.react(jid, item.groupchat, target, emojis);
    if (!item.groupchat) this.update(jid, false, (c) => ({ ...c, items: applyEvent(c.items, { kind: 'reactions', conversation: jid, sender: me, target, emojis }) }));
  }

  sendFiles(jid: string, files: File[]): void {
    for (const file of files) void this.sendFile(jid, file);
  }

  private async sendFile(jid: string, file: File): Promise<void> {
    const key = crypto.randomUUID();
    const set = (p: Partial<PendingUpload>) => (this.uploads.value = this.uploads.value.map((u) => (u.key === key ? { ...u, ...p } : u)));
    this.uploads.value = [...this.uploads.value, { key, conversation: jid, name: file.name, progress: 0 }];
    try {
      const url = await this.client.uploadFile(file, (progress) => set({ progress }));
      const groupchat = this.isGroup(jid);
      const id = await this.client.send({ to: jid, groupchat, text: url, file: url });
      if (!groupchat) this.addOwn(jid, id, url, undefined, { url, name: file.name });
      set({ progress: 1 });
      setTimeout(() => (this.uploads.value = this.uploads.value.filter((u) => u.key !== key)), 4000);
    } catch (err) {
      set({ error: err instanceof UploadError ? uploadMessage(err) : t('files.failed') });
    }
  }

  dismissUpload(key: string): void {
    this.uploads.value = this.uploads.value.filter((u) => u.key !== key);
  }

  async addContact(jid: string, name: string): Promise<void> {
    await this.client.addContact(jid, name);
  }

  async answerRequest(jid: string, accept: boolean): Promise<void> {
    this.requests.value = this.requests.value.filter((j) => j !== jid);
    if (accept) {
      if (!this.client.roster.has(jid)) await this.client.addContact(jid, '');
      await this.client.acceptSubscription(jid);
    } else {
      await this.client.declineSubscription(jid);
    }
  }

  async createGroup(name: string, members: string[]): Promise<string> {
    const room = await this.client.createGroup(name, members);
    await this.open(room);
    return room;
  }

  async answerInvite(inv: Invite, accept: boolean): Promise<void> {
    this.invites.value = this.invites.value.filter((i) => i.room !== inv.room);
    if (accept) {
      await this.client.acceptInvite(inv.room, inv.reason !== '' ? inv.reason : inv.room.split('@')[0] ?? inv.room);
    }
  }

  async runSearch(text: string): Promise<void> {
    const q = text.trim();
    if (q === '') {
      this.search.value = null;
      return;
    }
    this.search.value = { text: q, results: null };
    const results = await this.client.search(
      q,
      this.groups.value.map((g) => g.jid),
    );
    if (this.search.value.text === q) this.search.value = { text: q, results };
  }

  /**
   * A meeting for the conversation's members, whose chat stays in the
   * conversation's history. A group meets in its own room, so the meeting's
   * chat is the group's. A one-to-one conversation gets a room of its own
   * for the call (members-only, the two of us), whose invitation (XEP-0482,
   * with the link as text for other clients) goes to the other person; the
   * conversation shows that room's chat under it (`loadCallChats`).
   */
  async startCall(jid: string): Promise<string> {
    const groupchat = this.isGroup(jid);
    const room = groupchat ? jid : await this.client.createCallRoom(jid, t('chatApp.callWith', { name: this.nameOf(jid) }));
    const local = room.split('@')[0] ?? newMeetingName();
    const link = meetingLink(local);
    const text = t('chatApp.callStarted', { url: link });
    const id = await this.client.send({ to: jid, groupchat, text, ...(groupchat ? {} : { call: { room, url: link } }) });
    if (!groupchat) this.addOwn(jid, id, text, undefined, undefined, room);
    return local;
  }

  /**
   * What was said in the calls a one-to-one conversation started: each
   * call room's newest page, shown among the conversation's messages.
   * Only rooms of this server's meetings, and read again each time the
   * conversation is opened (a call may have happened since).
   */
  private async loadCallChats(jid: string): Promise<void> {
    const conv = this.conversations.value.get(jid);
    if (conv === undefined || conv.groupchat) return;
    // The newest calls first, and only so many: opening a conversation
    // asks this many archives at most.
    const rooms = new Set<string>();
    for (let i = conv.items.length - 1; i >= 0 && rooms.size < MAX_CALL_ROOMS; i -= 1) {
      const call = conv.items[i]?.call;
      if (call !== undefined && call.endsWith(`@${this.client.config.muc}`)) rooms.add(call);
    }
    // Asked together, not one after another.
    const pages = await Promise.all([...rooms].map((room) => this.client.history(room, true, '', PAGE).then((page) => ({ room, page }), () => null)));
    for (const got of pages) {
      if (got === null) continue;
      const events = got.page.events.flatMap((ev): ChatEvent[] =>
        ev.kind === 'message' ? [{ kind: 'message', item: { ...ev.item, conversation: jid, inCall: got.room } }] : [{ ...ev, conversation: jid }],
      );
      this.update(jid, false, (c) => ({ ...c, ...applyPage(c.items, events, c.orphans) }));
    }
  }

  async signOut(): Promise<void> {
    saveCredentials(null);
    this.status.value = 'signed-out';
    await this.client.close();
  }
}
