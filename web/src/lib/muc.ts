// XEP-0045 as the meeting uses it: join/update presence with Jitsi's
// payload, reading occupants' presence, the owner form, chat messages.
import { xml, type Element } from '@xmpp/client';
import { NS_OOB, NS_SID, fileOf, type FileRef } from './chat/stanzas';
import { roomConfig } from './moderation';
import { NS_DELAY, NS_JITMEET, NS_MUC, NS_MUC_USER, NS_NICK, NS_OCCUPANT_ID } from './ns';

export interface SourceState {
  muted: boolean;
  videoType?: string;
}

/** Source name → state, as the `<SourceInfo>` JSON carries it. */
export type SourceInfo = Record<string, SourceState>;

export interface LocalPresence {
  displayName: string;
  sources: SourceInfo;
  audioMuted: boolean;
  videoMuted: boolean;
  /**
   * Jitsi's participant properties (`<jitsi_participant_NAME>value`), e.g.
   * `raisedHand` with the time it went up; absent ones are not sent.
   */
  properties?: Record<string, string>;
}

const PROPERTY_PREFIX = 'jitsi_participant_';

/** A fresh endpoint id: 8 random lowercase hex characters (the MUC nick). */
export function newEndpointId(): string {
  const b = new Uint8Array(4);
  crypto.getRandomValues(b);
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * The presence that joins (join=true, with the room's password if it has
 * one) or updates our occupant.
 */
export function occupantPresence(occupantJid: string, p: LocalPresence, join: boolean, password = ''): Element {
  return xml(
    'presence',
    { to: occupantJid },
    join ? xml('x', { xmlns: NS_MUC }, password !== '' ? xml('password', {}, password) : null) : null,
    xml('nick', { xmlns: NS_NICK }, p.displayName),
    xml('SourceInfo', {}, JSON.stringify(p.sources)),
    xml('audiomuted', {}, String(p.audioMuted)),
    xml('videomuted', {}, String(p.videoMuted)),
    ...Object.entries(p.properties ?? {}).map(([k, v]) => xml(`${PROPERTY_PREFIX}${k}`, {}, v)),
  );
}

export function leavePresence(occupantJid: string): Element {
  return xml('presence', { to: occupantJid, type: 'unavailable' });
}

export interface OccupantPresence {
  nick: string;
  /**
   * The occupant is in the meeting, not just in the room: a group's room
   * also holds members who are only chatting, whom no tile shows.
   */
  inMeeting: boolean;
  type: 'available' | 'unavailable' | 'error';
  displayName?: string;
  /** The occupant's real JID (muc#user item jid), when the room shows it. */
  realJid?: string;
  /** XEP-0421: the same for every session of one account in the room. */
  occupantId?: string;
  role?: string;
  affiliation?: string;
  statuses: number[];
  sources: SourceInfo;
  /** Jitsi participant properties (`raisedHand`, ...), by name. */
  properties: Record<string, string>;
  /** For type=error: the stanza error condition. */
  error?: string;
  /** For registration-required: the lobby room to knock at (Jitsi's `<lobbyroom>`). */
  lobbyRoom?: string;
  /** Room destroyed (`<destroy/>` in an unavailable presence). */
  destroyed: boolean;
  actor?: string;
  reason?: string;
}

function parseSourceInfo(text: string | null): SourceInfo {
  if (text === null || text.trim() === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return {};
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return {};
  const out: SourceInfo = {};
  for (const [name, state] of Object.entries(v as Record<string, unknown>)) {
    if (typeof state !== 'object' || state === null) continue;
    const s = state as Record<string, unknown>;
    const entry: SourceState = { muted: s.muted === true };
    if (typeof s.videoType === 'string') entry.videoType = s.videoType;
    out[name] = entry;
  }
  return out;
}

/**
 * Whether a presence is a meeting client's: Jitsi clients (and ours) send
 * sources, mute state or a stats id; chat clients send none of them. The
 * focus applies the same rule before it invites anyone.
 */
export function takesPartInMeetings(presence: Element): boolean {
  return ['SourceInfo', 'audiomuted', 'videomuted', 'stats-id'].some((n) => presence.getChild(n) !== undefined);
}

/**
 * Reads a presence from `room@muc/nick`; null when it is not from an
 * occupant of `roomJid`.
 */
export function parseOccupantPresence(stanza: Element, roomJid: string): OccupantPresence | null {
  if (!stanza.is('presence')) return null;
  const from = stanza.attrs.from ?? '';
  const slash = from.indexOf('/');
  if (slash < 0 || from.slice(0, slash).toLowerCase() !== roomJid.toLowerCase()) return null;
  const type = stanza.attrs.type;
  const p: OccupantPresence = {
    nick: from.slice(slash + 1),
    type: type === 'unavailable' ? 'unavailable' : type === 'error' ? 'error' : 'available',
    statuses: [],
    sources: parseSourceInfo(stanza.getChildText('SourceInfo')),
    properties: {},
    destroyed: false,
    inMeeting: takesPartInMeetings(stanza),
  };
  for (const c of stanza.getChildElements()) {
    const name = c.getName();
    if (name.startsWith(PROPERTY_PREFIX) && name.length > PROPERTY_PREFIX.length) {
      p.properties[name.slice(PROPERTY_PREFIX.length)] = c.getText();
    }
  }
  if (type !== undefined && type !== 'unavailable' && type !== 'error') return null;
  const nick = stanza.getChildText('nick', NS_NICK);
  if (nick !== null) p.displayName = nick;
  const occupantId = stanza.getChild('occupant-id', NS_OCCUPANT_ID)?.attrs.id;
  if (occupantId !== undefined && occupantId !== '') p.occupantId = occupantId;
  const x = stanza.getChild('x', NS_MUC_USER);
  if (x) {
    const item = x.getChild('item');
    if (item) {
      if (item.attrs.jid !== undefined) p.realJid = item.attrs.jid;
      if (item.attrs.role !== undefined) p.role = item.attrs.role;
      if (item.attrs.affiliation !== undefined) p.affiliation = item.attrs.affiliation;
      const actor = item.getChild('actor');
      const a = actor?.attrs.nick ?? actor?.attrs.jid;
      if (a !== undefined) p.actor = a;
      const reason = item.getChildText('reason');
      if (reason !== null) p.reason = reason;
    }
    for (const s of x.getChildren('status')) {
      const code = Number(s.attrs.code);
      if (Number.isInteger(code)) p.statuses.push(code);
    }
    if (x.getChild('destroy')) p.destroyed = true;
  }
  if (p.type === 'error') {
    const err = stanza.getChild('error');
    const cond = err?.getChildElements().find((c) => c.attrs.xmlns === 'urn:ietf:params:xml:ns:xmpp-stanzas');
    p.error = cond?.getName() ?? 'undefined-condition';
    const lobby = err?.getChildText('lobbyroom', NS_JITMEET);
    if (lobby !== null && lobby !== undefined && lobby !== '') p.lobbyRoom = lobby;
  }
  return p;
}

function bare(jid: string): string {
  const slash = jid.indexOf('/');
  return (slash < 0 ? jid : jid.slice(0, slash)).toLowerCase();
}

/**
 * Whether an occupant is the focus: nick `focus`, and a real JID whose
 * bare part is the focusjid the focus answered the conference request with.
 * An occupant without a real JID is never trusted as the focus.
 */
export function isFocusOccupant(p: OccupantPresence, focusJid: string | undefined): boolean {
  if (p.nick !== 'focus' || p.realJid === undefined || focusJid === undefined) return false;
  return bare(p.realJid) === bare(focusJid);
}

/**
 * The owner form (the `<query/>` of an IQ set to the room) making a new room
 * show real JIDs to everyone, which Jitsi clients rely on to trust the focus.
 */
export function ownerConfigQuery(): Element {
  return roomConfig({ 'muc#roomconfig_whois': 'anyone' });
}

export interface ChatMessage {
  /** The sender's endpoint id (MUC nick). */
  from: string;
  text: string;
  /** A private message (type=chat to our occupant) rather than to the room. */
  private: boolean;
  /** From the room's history (XEP-0203 delay). */
  delayed: boolean;
  stamp?: string;
  id?: string;
  /** The display name the sender put in the message (XEP-0172). */
  nick?: string;
  /** A shared file (XEP-0066: the body is its URL). */
  file?: FileRef;
  /** XEP-0421, as the room stamped it: who sent it, across their sessions. */
  occupantId?: string;
}

/**
 * A chat message; it carries our display name (XEP-0172, as Jitsi Meet
 * sends it) so that the room's history still names us after we left.
 */
export function chatMessage(to: string, text: string, isPrivate: boolean, id: string, nick = '', file = false): Element {
  return xml(
    'message',
    { to, type: isPrivate ? 'chat' : 'groupchat', id },
    xml('body', {}, text),
    nick !== '' ? xml('nick', { xmlns: NS_NICK }, nick) : null,
    // The same id as origin-id: chat clients (ours among them) correct,
    // retract and react by it.
    xml('origin-id', { xmlns: NS_SID, id }),
    file ? xml('x', { xmlns: NS_OOB }, xml('url', {}, text)) : null,
  );
}

/** Reads a room chat message; null for anything else (subjects, errors, other senders). */
export function parseChatMessage(stanza: Element, roomJid: string): ChatMessage | null {
  if (!stanza.is('message')) return null;
  const type = stanza.attrs.type;
  if (type !== 'groupchat' && type !== 'chat') return null;
  const body = stanza.getChildText('body');
  if (body === null) return null;
  const from = stanza.attrs.from ?? '';
  const slash = from.indexOf('/');
  if (slash < 0 || from.slice(0, slash).toLowerCase() !== roomJid.toLowerCase()) return null;
  const delay = stanza.getChild('delay', NS_DELAY);
  const m: ChatMessage = {
    from: from.slice(slash + 1),
    text: body,
    private: type === 'chat',
    delayed: delay !== undefined,
  };
  if (delay?.attrs.stamp !== undefined) m.stamp = delay.attrs.stamp;
  if (stanza.attrs.id !== undefined) m.id = stanza.attrs.id;
  const nick = stanza.getChildText('nick', NS_NICK);
  if (nick !== null && nick !== '') m.nick = nick;
  const file = fileOf(stanza, body);
  if (file !== undefined) m.file = file;
  const occupantId = stanza.getChild('occupant-id', NS_OCCUPANT_ID)?.attrs.id;
  if (occupantId !== undefined && occupantId !== '') m.occupantId = occupantId;
  return m;
}

/** A mediated invitation from `roomJid` (how a knocker is admitted), or null. */
export function isInvitation(stanza: Element, roomJid: string): boolean {
  if (!stanza.is('message') || (stanza.attrs.from ?? '').toLowerCase() !== roomJid.toLowerCase()) return false;
  return stanza.getChild('x', NS_MUC_USER)?.getChild('invite') !== undefined;
}

/** Status 104: the room's configuration changed (lock, lobby). */
export function isConfigChange(stanza: Element, roomJid: string): boolean {
  if (!stanza.is('message') || (stanza.attrs.from ?? '').toLowerCase() !== roomJid.toLowerCase()) return false;
  return (stanza.getChild('x', NS_MUC_USER)?.getChildren('status') ?? []).some((s) => s.attrs.code === '104');
}
