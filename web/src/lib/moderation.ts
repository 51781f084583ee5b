// What a meeting's moderators send, as lib-jitsi-meet sends it: force-mute
// through the focus, XEP-0045 admin and owner requests to the room (kick,
// roles, password, members-only for the lobby, destroy), and the mediated
// invitation that lets a knocker in.
import { xml, type Element } from '@xmpp/client';
import { NS_DATA, NS_DISCO_INFO, NS_MUC_ADMIN, NS_MUC_OWNER, NS_MUC_USER, NS_MUTE_AUDIO, NS_MUTE_VIDEO } from './ns';

export type MediaKind = 'audio' | 'video';

/** To the focus: mute (or, for oneself only, unmute) `occupantJid`. */
export function muteRequest(occupantJid: string, kind: MediaKind, muted: boolean): Element {
  return xml('mute', { xmlns: kind === 'audio' ? NS_MUTE_AUDIO : NS_MUTE_VIDEO, jid: occupantJid }, String(muted));
}

/** Reads a force-mute the focus sends us: the kind, or null if it is none. */
export function parseMuteNotice(el: Element): { kind: MediaKind; muted: boolean; actor?: string } | null {
  const kind = el.attrs.xmlns === NS_MUTE_AUDIO ? 'audio' : el.attrs.xmlns === NS_MUTE_VIDEO ? 'video' : null;
  if (!el.is('mute') || kind === null) return null;
  const out: { kind: MediaKind; muted: boolean; actor?: string } = { kind, muted: el.getText().trim() === 'true' };
  if (el.attrs.actor !== undefined) out.actor = el.attrs.actor;
  return out;
}

/** An admin request changing one item: `{ nick, role }` or `{ jid, affiliation }`. */
export function adminItem(item: Record<string, string>, reason?: string): Element {
  return xml(
    'query',
    { xmlns: NS_MUC_ADMIN },
    xml('item', item, reason !== undefined && reason !== '' ? xml('reason', {}, reason) : null),
  );
}

/** An owner form setting room options (values as XEP-0045 writes them). */
export function roomConfig(fields: Record<string, string>): Element {
  const field = (v: string, value: string) => xml('field', { var: v }, xml('value', {}, value));
  return xml(
    'query',
    { xmlns: NS_MUC_OWNER },
    xml(
      'x',
      { xmlns: NS_DATA, type: 'submit' },
      field('FORM_TYPE', 'http://jabber.org/protocol/muc#roomconfig'),
      ...Object.entries(fields).map(([k, v]) => field(k, v)),
    ),
  );
}

/** Locks the room with a password, or (with '') unlocks it. */
export function passwordConfig(password: string): Element {
  return roomConfig({
    'muc#roomconfig_passwordprotectedroom': password === '' ? '0' : '1',
    'muc#roomconfig_roomsecret': password,
  });
}

export function destroyRoom(reason: string): Element {
  return xml('query', { xmlns: NS_MUC_OWNER }, xml('destroy', {}, reason !== '' ? xml('reason', {}, reason) : null));
}

/** Admits a knocker: a mediated invitation to its full JID, through the room. */
export function invite(roomJid: string, to: string): Element {
  return xml('message', { to: roomJid }, xml('x', { xmlns: NS_MUC_USER }, xml('invite', { to })));
}

export function discoInfo(): Element {
  return xml('query', { xmlns: NS_DISCO_INFO });
}

/**
 * Whether a room is locked and has its lobby on, and the lobby room it
 * names (`muc#roominfo_lobbyroom`), from its disco#info.
 */
export function parseRoomState(result: Element): { locked: boolean; lobby: boolean; lobbyRoom?: string } {
  const q = result.getChild('query', NS_DISCO_INFO);
  const feats = new Set((q?.getChildren('feature') ?? []).map((f) => f.attrs.var));
  const out: { locked: boolean; lobby: boolean; lobbyRoom?: string } = {
    locked: feats.has('muc_passwordprotected'),
    lobby: feats.has('muc_membersonly'),
  };
  const field = q
    ?.getChild('x', 'jabber:x:data')
    ?.getChildren('field')
    .find((f) => f.attrs.var === 'muc#roominfo_lobbyroom');
  const room = field?.getChildText('value');
  if (room !== null && room !== undefined && room !== '') out.lobbyRoom = room;
  return out;
}
