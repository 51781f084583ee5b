// Chat stanzas, built and read without a connection: one-to-one and room
// messages (RFC 6121, XEP-0045), their ids (XEP-0359), archives (XEP-0313
// with RSM and XEP-0431 full-text search), corrections (0308), retractions
// (0424), replies (0461), reactions (0444), files by URL (0066), the roster
// (RFC 6121 §2), bookmarks (0402) and invitations to rooms (0249).
import { xml, type Element } from '@xmpp/client';
import { NS_DATA, NS_DELAY, NS_MUC_USER, NS_NICK } from '../ns';

export const NS_SID = 'urn:xmpp:sid:0';
export const NS_MAM = 'urn:xmpp:mam:2';
export const NS_RSM = 'http://jabber.org/protocol/rsm';
export const NS_FORWARD = 'urn:xmpp:forward:0';
export const NS_CARBONS = 'urn:xmpp:carbons:2';
export const NS_CORRECT = 'urn:xmpp:message-correct:0';
export const NS_RETRACT = 'urn:xmpp:message-retract:1';
export const NS_REPLY = 'urn:xmpp:reply:0';
export const NS_REACTIONS = 'urn:xmpp:reactions:0';
export const NS_FALLBACK = 'urn:xmpp:fallback:0';
export const NS_HINTS = 'urn:xmpp:hints';
export const NS_OOB = 'jabber:x:oob';
export const NS_ROSTER = 'jabber:iq:roster';
export const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
export const NS_PUBSUB_EVENT = 'http://jabber.org/protocol/pubsub#event';
export const NS_BOOKMARKS = 'urn:xmpp:bookmarks:1';
export const NS_DIRECT_INVITE = 'jabber:x:conference';
export const NS_FULLTEXT = 'urn:xmpp:fulltext:0';
export const NS_CHATSTATES = 'http://jabber.org/protocol/chatstates';
/** XEP-0482: a call's invitation, naming its (Jitsi-style) room and its link. */
export const NS_CALL_INVITES = 'urn:xmpp:call-invites:0';

/** The bare form of a JID, lowercased in its local and domain parts. */
export function bare(jid: string): string {
  const slash = jid.indexOf('/');
  return (slash < 0 ? jid : jid.slice(0, slash)).toLowerCase();
}

export function resourceOf(jid: string): string {
  const slash = jid.indexOf('/');
  return slash < 0 ? '' : jid.slice(slash + 1);
}

/** A fresh message id, also used as its origin-id (so corrections and retractions of ours find it everywhere). */
export function newId(): string {
  return crypto.randomUUID();
}

export interface FileRef {
  url: string;
  /** The file's name as the URL's last segment says. */
  name: string;
}

/** What one message stanza says, whatever it is about. */
export type ChatEvent =
  | { kind: 'message'; item: ChatItem }
  | { kind: 'correction'; conversation: string; sender: string; target: string; text: string; id: string }
  | { kind: 'retraction'; conversation: string; sender: string; target: string }
  | { kind: 'reactions'; conversation: string; sender: string; target: string; emojis: string[] };

export interface ChatItem {
  /** The conversation: the other party's bare JID, or the room's. */
  conversation: string;
  groupchat: boolean;
  /** Who wrote it: a bare JID in a one-to-one conversation, the occupant's nick in a room. */
  sender: string;
  /** A display name the message carried (XEP-0172). */
  nick?: string;
  outgoing: boolean;
  /** The sender's id for the message (origin-id, else the stanza's id): what corrections and retractions name. */
  id: string;
  /** The archive's id (XEP-0359 stanza-id by the user's server or the room): what MAM pages by and room reactions name. */
  stanzaId?: string;
  text: string;
  /** Milliseconds since the epoch. */
  stamp: number;
  edited?: boolean;
  retracted?: boolean;
  reply?: { id: string; to?: string; quote?: string };
  file?: FileRef;
  /** Emoji to the senders (bare JIDs or nicks) who chose it. */
  reactions?: Record<string, string[]>;
  /** A call's invitation (XEP-0482): the room the call is held in. */
  call?: string;
  /**
   * Said in the chat of a call this conversation started (read from that
   * room's archive, shown here): the call's room. Such a message is only
   * read; the room, not this conversation, is where it could be answered.
   */
  inCall?: string;
}

function stampOf(el: Element, fallback: number): number {
  const d = el.getChild('delay', NS_DELAY)?.attrs.stamp;
  const t = d !== undefined ? Date.parse(d) : NaN;
  return Number.isNaN(t) ? fallback : t;
}

export function fileOf(el: Element, body: string): FileRef | undefined {
  const url = el.getChild('x', NS_OOB)?.getChildText('url');
  if (url === null || url === undefined || url === '') return undefined;
  // Only when the body is the URL itself (XEP-0066 §4's convention): a
  // link inside a sentence stays text.
  if (body.trim() !== url) return undefined;
  try {
    const u = new URL(url);
    // Only web addresses: a `javascript:` or `data:` link is no file.
    if (u.protocol !== 'https:' && u.protocol !== 'http:') return undefined;
    const path = u.pathname;
    return { url, name: decodeURIComponent(path.slice(path.lastIndexOf('/') + 1)) || url };
  } catch {
    return undefined;
  }
}

/** The body without the part a fallback element marks as being for `ns` (a reply's quote). */
export function stripFallback(el: Element, body: string, ns: string): { text: string; quote?: string } {
  const fb = el.getChildren('fallback', NS_FALLBACK).find((f) => f.attrs.for === ns);
  const range = fb?.getChild('body');
  if (fb === undefined || range === undefined) return { text: body };
  // Offsets count Unicode code points (XEP-0426).
  const cps = Array.from(body);
  const start = Number(range.attrs.start ?? 0);
  const end = Number(range.attrs.end ?? cps.length);
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > cps.length || start > end) return { text: body };
  const quote = cps
    .slice(start, end)
    .join('')
    .split('\n')
    .map((l) => l.replace(/^> ?/, ''))
    .join('\n')
    .trim();
  return { text: (cps.slice(0, start).join('') + cps.slice(end).join('')).replace(/^\n+/, ''), quote };
}

/**
 * Reads one message as it arrived live or from an archive. `me` is our bare
 * JID; `myNicks` maps a room's JID to our nick there (to tell our own room
 * messages); `archiveOf` is the conversation an archive query was about, whose
 * stanza-id is the one to keep. Null for anything that is not chat.
 */
export function parseChat(
  el: Element,
  me: string,
  myNicks: ReadonlyMap<string, string>,
  now: number,
  archived?: { id: string; stamp: number },
): ChatEvent | null {
  if (!el.is('message')) return null;
  const type = el.attrs.type ?? 'normal';
  if (type === 'error' || type === 'headline') return null;
  const groupchat = type === 'groupchat';
  const from = el.attrs.from ?? me;
  const to = el.attrs.to ?? me;
  let conversation: string;
  let sender: string;
  let outgoing: boolean;
  if (groupchat) {
    conversation = bare(from);
    sender = resourceOf(from);
    if (sender === '') return null; // the room itself (subject, status)
    const mine = myNicks.get(conversation);
    outgoing = mine !== undefined && mine === sender;
  } else {
    outgoing = bare(from) === me;
    conversation = outgoing ? bare(to) : bare(from);
    sender = bare(from);
  }
  // A private message through a room (from room/nick) is not a conversation of ours.
  if (!groupchat && el.getChild('x', NS_MUC_USER) !== undefined) return null;
  const originId = el.getChild('origin-id', NS_SID)?.attrs.id;
  const id = originId ?? el.attrs.id ?? '';
  const stanzaIdBy = groupchat ? conversation : me;
  const stanzaId =
    archived?.id ?? el.getChildren('stanza-id', NS_SID).find((s) => bare(s.attrs.by ?? '') === stanzaIdBy)?.attrs.id;
  const retract = el.getChild('retract', NS_RETRACT);
  if (retract?.attrs.id !== undefined) {
    return { kind: 'retraction', conversation, sender, target: retract.attrs.id };
  }
  const reactions = el.getChild('reactions', NS_REACTIONS);
  if (reactions?.attrs.id !== undefined) {
    const emojis = reactions.getChildren('reaction').map((r) => r.getText()).filter((r) => r !== '');
    return { kind: 'reactions', conversation, sender, target: reactions.attrs.id, emojis };
  }
  const body = el.getChildText('body');
  const replace = el.getChild('replace', NS_CORRECT)?.attrs.id;
  if (replace !== undefined && body !== null) {
    return { kind: 'correction', conversation, sender, target: replace, text: body, id };
  }
  const stamp = archived?.stamp ?? stampOf(el, now);
  if (el.getChild('retracted', NS_RETRACT) !== undefined) {
    const item: ChatItem = { conversation, groupchat, sender, outgoing, id, text: '', stamp, retracted: true };
    if (stanzaId !== undefined) item.stanzaId = stanzaId;
    return { kind: 'message', item };
  }
  if (body === null || body === '') return null;
  const replyEl = el.getChild('reply', NS_REPLY);
  const { text, quote } = replyEl !== undefined ? stripFallback(el, body, NS_REPLY) : { text: body, quote: undefined };
  const item: ChatItem = { conversation, groupchat, sender, outgoing, id, text, stamp };
  if (stanzaId !== undefined) item.stanzaId = stanzaId;
  const nick = el.getChildText('nick', NS_NICK);
  if (nick !== null && nick !== '') item.nick = nick;
  if (replyEl?.attrs.id !== undefined) {
    item.reply = { id: replyEl.attrs.id };
    if (replyEl.attrs.to !== undefined) item.reply.to = replyEl.attrs.to;
    if (quote !== undefined && quote !== '') item.reply.quote = quote;
  }
  const file = fileOf(el, body);
  if (file !== undefined) item.file = file;
  const call = el.getChild('invite', NS_CALL_INVITES)?.getChild('jitsi')?.attrs.room;
  if (call !== undefined && isBareJid(call)) item.call = call;
  return { kind: 'message', item };
}

/** `local@domain`, nothing more: what a room's address is. */
function isBareJid(s: string): boolean {
  return /^[^@/\s]+@[^@/\s]+$/.test(s) && s.length <= 3071;
}

/** The message a carbon (XEP-0280) carries, or the stanza itself. */
export function unwrapCarbon(el: Element, me: string): Element | null {
  for (const kind of ['sent', 'received']) {
    const c = el.getChild(kind, NS_CARBONS);
    if (c === undefined) continue;
    // Only our own server may send us carbons.
    if (bare(el.attrs.from ?? me) !== me) return null;
    return c.getChild('forwarded', NS_FORWARD)?.getChild('message') ?? null;
  }
  return el;
}

export interface OutgoingOptions {
  to: string;
  groupchat: boolean;
  text: string;
  id?: string;
  nick?: string;
  replyTo?: { id: string; to?: string; quote: string };
  file?: string;
  /** An invitation to a call: its room, and the link to it (in the body too, for other clients). */
  call?: { room: string; url: string };
}

/** A chat message; its id doubles as its origin-id. */
export function chatMessage(o: OutgoingOptions): { el: Element; id: string } {
  const id = o.id ?? newId();
  let body = o.text;
  const extra: Element[] = [];
  if (o.replyTo !== undefined) {
    // The quote in the body is for clients without replies (XEP-0461 §5).
    const quoted = o.replyTo.quote
      .split('\n')
      .map((l) => `> ${l}`)
      .join('\n');
    const prefix = `${quoted}\n`;
    body = prefix + o.text;
    const attrs: Record<string, string> = { xmlns: NS_REPLY, id: o.replyTo.id };
    if (o.replyTo.to !== undefined) attrs.to = o.replyTo.to;
    extra.push(xml('reply', attrs));
    extra.push(xml('fallback', { xmlns: NS_FALLBACK, for: NS_REPLY }, xml('body', { start: 0, end: Array.from(prefix).length })));
  }
  if (o.file !== undefined) {
    body = o.file;
    extra.push(xml('x', { xmlns: NS_OOB }, xml('url', {}, o.file)));
  }
  if (o.call !== undefined) {
    extra.push(
      xml('invite', { xmlns: NS_CALL_INVITES, video: 'true' }, xml('jitsi', { room: o.call.room }), xml('external', { uri: o.call.url })),
    );
  }
  const el = xml(
    'message',
    { to: o.to, type: o.groupchat ? 'groupchat' : 'chat', id },
    xml('body', {}, body),
    xml('origin-id', { xmlns: NS_SID, id }),
    o.nick !== undefined ? xml('nick', { xmlns: NS_NICK }, o.nick) : null,
    xml('markable', { xmlns: 'urn:xmpp:chat-markers:0' }),
    ...extra,
  );
  return { el, id };
}

export function correction(to: string, groupchat: boolean, target: string, text: string): Element {
  const id = newId();
  return xml(
    'message',
    { to, type: groupchat ? 'groupchat' : 'chat', id },
    xml('body', {}, text),
    xml('replace', { xmlns: NS_CORRECT, id: target }),
    xml('origin-id', { xmlns: NS_SID, id }),
  );
}

export function retraction(to: string, groupchat: boolean, target: string): Element {
  const id = newId();
  return xml(
    'message',
    { to, type: groupchat ? 'groupchat' : 'chat', id },
    xml('retract', { xmlns: NS_RETRACT, id: target }),
    xml('fallback', { xmlns: NS_FALLBACK, for: NS_RETRACT }),
    xml('body', {}, 'This person attempted to retract a previous message, but it is unsupported by your client.'),
    xml('store', { xmlns: NS_HINTS }),
    xml('origin-id', { xmlns: NS_SID, id }),
  );
}

/** Our whole set of reactions to `target` (XEP-0444 replaces the set each time). */
export function reactionsMessage(to: string, groupchat: boolean, target: string, emojis: string[]): Element {
  const id = newId();
  return xml(
    'message',
    { to, type: groupchat ? 'groupchat' : 'chat', id },
    xml('reactions', { xmlns: NS_REACTIONS, id: target }, ...emojis.map((e) => xml('reaction', {}, e))),
    xml('store', { xmlns: NS_HINTS }),
    xml('origin-id', { xmlns: NS_SID, id }),
  );
}

export interface ArchiveQuery {
  queryId: string;
  /** The archive: a room's JID, or undefined for our own. */
  archive?: string;
  /** Only the conversation with this JID (our own archive). */
  with?: string;
  /** XEP-0431 full-text search. */
  text?: string;
  /** The page before this archive id; '' for the newest page. */
  before: string;
  max: number;
}

export function archiveQuery(q: ArchiveQuery): Element {
  const fields: Element[] = [xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_MAM))];
  if (q.with !== undefined) fields.push(xml('field', { var: 'with' }, xml('value', {}, q.with)));
  if (q.text !== undefined) fields.push(xml('field', { var: `{${NS_FULLTEXT}}fulltext` }, xml('value', {}, q.text)));
  return xml(
    'iq',
    { type: 'set', ...(q.archive !== undefined ? { to: q.archive } : {}) },
    xml(
      'query',
      { xmlns: NS_MAM, queryid: q.queryId },
      xml('x', { xmlns: NS_DATA, type: 'submit' }, ...fields),
      xml('set', { xmlns: NS_RSM }, xml('max', {}, String(q.max)), xml('before', {}, q.before)),
    ),
  );
}

/** One archive result message: the forwarded message, its archive id and stamp; null if not for `queryId`. */
export function archiveResult(el: Element, queryId: string): { message: Element; id: string; stamp: number } | null {
  const r = el.getChild('result', NS_MAM);
  if (r === undefined || r.attrs.queryid !== queryId || r.attrs.id === undefined) return null;
  const fwd = r.getChild('forwarded', NS_FORWARD);
  const message = fwd?.getChild('message');
  if (fwd === undefined || message === undefined) return null;
  const stamp = Date.parse(fwd.getChild('delay', NS_DELAY)?.attrs.stamp ?? '');
  return { message, id: r.attrs.id, stamp: Number.isNaN(stamp) ? 0 : stamp };
}

/** The end of an archive page: whether it reached the archive's start. */
export function archiveFin(iq: Element): { complete: boolean; first?: string } {
  const fin = iq.getChild('fin', NS_MAM);
  const first = fin?.getChild('set', NS_RSM)?.getChildText('first') ?? undefined;
  return { complete: fin?.attrs.complete === 'true', ...(first !== undefined && first !== '' ? { first } : {}) };
}

export type Subscription = 'none' | 'to' | 'from' | 'both' | 'remove';

export interface RosterItem {
  jid: string;
  name: string;
  subscription: Subscription;
  /** We asked for their presence and wait for an answer. */
  pending: boolean;
}

export function parseRosterItems(query: Element | undefined): RosterItem[] {
  if (query === undefined) return [];
  return query.getChildren('item').flatMap((i) => {
    const jid = i.attrs.jid;
    if (jid === undefined || jid === '') return [];
    const s = i.attrs.subscription;
    const subscription: Subscription = s === 'to' || s === 'from' || s === 'both' || s === 'remove' ? s : 'none';
    return [{ jid: bare(jid), name: i.attrs.name ?? '', subscription, pending: i.attrs.ask === 'subscribe' }];
  });
}

export function rosterSet(jid: string, name: string | null): Element {
  const item = name === null ? xml('item', { jid, subscription: 'remove' }) : xml('item', { jid, ...(name !== '' ? { name } : {}) });
  return xml('iq', { type: 'set' }, xml('query', { xmlns: NS_ROSTER }, item));
}

export interface Bookmark {
  jid: string;
  name: string;
  nick?: string;
  autojoin: boolean;
}

export function parseBookmarks(items: Element | undefined): Bookmark[] {
  if (items === undefined) return [];
  return items.getChildren('item').flatMap((i) => {
    const c = i.getChild('conference', NS_BOOKMARKS);
    const jid = i.attrs.id;
    if (c === undefined || jid === undefined) return [];
    const b: Bookmark = { jid: bare(jid), name: c.attrs.name ?? '', autojoin: c.attrs.autojoin === 'true' || c.attrs.autojoin === '1' };
    const nick = c.getChildText('nick');
    if (nick !== null && nick !== '') b.nick = nick;
    return [b];
  });
}

/** Publishes one bookmark, private to us (XEP-0402 §4's publish-options). */
export function publishBookmark(b: Bookmark): Element {
  const opt = (v: string, value: string) => xml('field', { var: v }, xml('value', {}, value));
  return xml(
    'iq',
    { type: 'set' },
    xml(
      'pubsub',
      { xmlns: NS_PUBSUB },
      xml(
        'publish',
        { node: NS_BOOKMARKS },
        xml(
          'item',
          { id: b.jid },
          xml('conference', { xmlns: NS_BOOKMARKS, name: b.name, autojoin: b.autojoin ? 'true' : 'false' }, b.nick !== undefined ? xml('nick', {}, b.nick) : null),
        ),
      ),
      xml(
        'publish-options',
        {},
        xml(
          'x',
          { xmlns: NS_DATA, type: 'submit' },
          xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, 'http://jabber.org/protocol/pubsub#publish-options')),
          opt('pubsub#persist_items', 'true'),
          opt('pubsub#max_items', 'max'),
          opt('pubsub#send_last_published_item', 'never'),
          opt('pubsub#access_model', 'whitelist'),
        ),
      ),
    ),
  );
}

export function fetchBookmarks(): Element {
  return xml('iq', { type: 'get' }, xml('pubsub', { xmlns: NS_PUBSUB }, xml('items', { node: NS_BOOKMARKS })));
}

/** A direct invitation to a room (XEP-0249). */
export function directInvite(to: string, room: string, reason: string): Element {
  return xml('message', { to, id: newId() }, xml('x', { xmlns: NS_DIRECT_INVITE, jid: room, reason }));
}

export function parseDirectInvite(el: Element): { room: string; from: string; reason: string } | null {
  const x = el.getChild('x', NS_DIRECT_INVITE);
  if (!el.is('message') || x?.attrs.jid === undefined) return null;
  return { room: bare(x.attrs.jid), from: bare(el.attrs.from ?? ''), reason: x.attrs.reason ?? '' };
}

/** An owner's configuration of a new group: kept, members only, archived, members see each other's JIDs. */
export function groupConfig(room: string, name: string): Element {
  const f = (v: string, value: string) => xml('field', { var: v }, xml('value', {}, value));
  return xml(
    'iq',
    { type: 'set', to: room },
    xml(
      'query',
      { xmlns: 'http://jabber.org/protocol/muc#owner' },
      xml(
        'x',
        { xmlns: NS_DATA, type: 'submit' },
        xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, 'http://jabber.org/protocol/muc#roomconfig')),
        f('muc#roomconfig_roomname', name),
        f('muc#roomconfig_persistentroom', '1'),
        f('muc#roomconfig_membersonly', '1'),
        f('muc#roomconfig_publicroom', '0'),
        f('muc#roomconfig_whois', 'anyone'),
      ),
    ),
  );
}

export function memberAffiliations(room: string, jids: string[]): Element {
  return xml(
    'iq',
    { type: 'set', to: room },
    xml('query', { xmlns: 'http://jabber.org/protocol/muc#admin' }, ...jids.map((jid) => xml('item', { jid, affiliation: 'member' }))),
  );
}
