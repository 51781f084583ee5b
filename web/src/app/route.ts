// What the address asks for: the home page, a meeting, or a room name that
// cannot be one (shown as such, never as a blank page).
import { roomFromPath } from '../lib';

export type Route =
  | { kind: 'home' }
  | { kind: 'chat'; conversation?: string }
  | { kind: 'meeting'; room: string }
  | { kind: 'bad-room'; raw: string };

/** The chat's address; no meeting may be named so. */
export const CHAT_PATH = 'chat';

export function routeOf(pathname: string): Route {
  const first = pathname.split('/').find((s) => s !== '');
  if (first === undefined) return { kind: 'home' };
  if (first === CHAT_PATH) {
    const rest = pathname.split('/').filter((x) => x !== '')[1];
    if (rest === undefined) return { kind: 'chat' };
    try {
      return { kind: 'chat', conversation: decodeURIComponent(rest).toLowerCase() };
    } catch {
      return { kind: 'chat' };
    }
  }
  const room = roomFromPath(pathname);
  if (room === null) {
    let raw = first;
    try {
      raw = decodeURIComponent(first);
    } catch {
      // Shown as typed.
    }
    return { kind: 'bad-room', raw };
  }
  return { kind: 'meeting', room };
}

// Crockford's base32 without look-alikes, lowercase: easy to read aloud.
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

/**
 * A meeting name nobody guesses: 80 random bits in four groups of four
 * (`k3x9-...`), as many as Jitsi's word triples carry and easier to type.
 */
export function newMeetingName(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  const chars = [...b].map((x) => ALPHABET[x & 31] ?? '0');
  return [0, 4, 8, 12].map((i) => chars.slice(i, i + 4).join('')).join('-');
}

/** The link that opens a meeting here (nothing an embedding added). */
export function meetingLink(room: string): string {
  return `${location.origin}/${encodeURIComponent(room)}`;
}

/** A room name a person typed: spaces become dashes; null if still unusable. */
export function roomFromInput(text: string): string | null {
  const cleaned = text.trim().replace(/\s+/g, '-');
  if (cleaned === '') return null;
  // A pasted meeting link joins that meeting.
  let path = cleaned;
  try {
    if (/^https?:\/\//i.test(cleaned)) path = new URL(cleaned).pathname;
  } catch {
    return null;
  }
  const room = roomFromPath(path.startsWith('/') ? path : `/${encodeURIComponent(path)}`);
  return room === CHAT_PATH ? null : room;
}
