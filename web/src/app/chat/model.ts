// A conversation's messages as the page shows them, from what arrives live
// and what the archive pages back: each message once, corrections applied
// to what they correct, retractions to what they retract, each person's
// reactions replacing their earlier ones. Pure functions, tested without a
// browser (test/chat-model.test.ts).
import type { ChatEvent, ChatItem } from '../../lib';

export interface Conversation {
  jid: string;
  groupchat: boolean;
  items: readonly ChatItem[];
  unread: number;
  /** The archive was read back to its start. */
  complete: boolean;
  /** The oldest archive id read, for the next page back. */
  oldest?: string;
  /** The newest archive page was read (history is not just what arrived live). */
  loaded: boolean;
  /**
   * Corrections, retractions and reactions read from the archive whose
   * message is on a page not read yet: applied when it comes.
   */
  orphans: readonly ChatEvent[];
}

export function emptyConversation(jid: string, groupchat: boolean): Conversation {
  return { jid, groupchat, items: [], unread: 0, complete: false, loaded: false, orphans: [] };
}

/** Whether `item` is the message an event names: by the sender's id, or the archive's. */
function names(item: ChatItem, target: string): boolean {
  return item.id === target || item.stanzaId === target;
}

function sameItem(a: ChatItem, b: ChatItem): boolean {
  if (a.stanzaId !== undefined && a.stanzaId === b.stanzaId) return true;
  return a.id !== '' && a.id === b.id && a.sender === b.sender;
}

/** The messages after one event; `items` stays sorted by time. */
export function applyEvent(items: readonly ChatItem[], ev: ChatEvent): readonly ChatItem[] {
  switch (ev.kind) {
    case 'message': {
      const i = items.findIndex((x) => sameItem(x, ev.item));
      if (i >= 0) {
        // Our own message, echoed by a room or found in the archive: keep
        // what we had, learn its archive id.
        const old = items[i];
        if (old === undefined) return items;
        const merged = { ...old, ...(ev.item.stanzaId !== undefined ? { stanzaId: ev.item.stanzaId } : {}) };
        if (ev.item.retracted === true) merged.retracted = true;
        return items.map((x, k) => (k === i ? merged : x));
      }
      const out = [...items];
      let at = out.length;
      while (at > 0 && (out[at - 1]?.stamp ?? 0) > ev.item.stamp) at -= 1;
      out.splice(at, 0, ev.item);
      return out;
    }
    case 'correction':
      // Only the author may correct (XEP-0308 §5), and so only theirs changes.
      return items.map((x) => (names(x, ev.target) && x.sender === ev.sender && !x.retracted ? { ...x, text: ev.text, edited: true } : x));
    case 'retraction':
      return items.map((x) => (names(x, ev.target) && x.sender === ev.sender ? { ...x, text: '', retracted: true } : x));
    case 'reactions':
      return items.map((x) => {
        if (!names(x, ev.target)) return x;
        const r: Record<string, string[]> = {};
        for (const [emoji, who] of Object.entries(x.reactions ?? {})) {
          const rest = who.filter((w) => w !== ev.sender);
          if (rest.length > 0) r[emoji] = rest;
        }
        for (const e of ev.emojis) r[e] = [...(r[e] ?? []), ev.sender];
        return { ...x, reactions: r };
      });
  }
}

/** An archive page (oldest first) put before what the conversation holds. */
export function applyPage(
  items: readonly ChatItem[],
  events: readonly ChatEvent[],
  orphans: readonly ChatEvent[] = [],
): { items: readonly ChatItem[]; orphans: readonly ChatEvent[] } {
  // Messages first, so that the corrections and reactions find them; then
  // this page's changes, and then those of newer pages that waited for it.
  let out = items;
  for (const ev of events) if (ev.kind === 'message') out = applyEvent(out, ev);
  const waiting: ChatEvent[] = [];
  for (const ev of [...events.filter((e) => e.kind !== 'message'), ...orphans]) {
    if (ev.kind === 'message') continue;
    if (out.some((x) => names(x, ev.target))) out = applyEvent(out, ev);
    else waiting.push(ev);
  }
  return { items: out, orphans: waiting };
}

/** The reactions we have on a message, with `emoji` added or taken away. */
export function toggledReactions(item: ChatItem, me: string, emoji: string): string[] {
  const mine = Object.entries(item.reactions ?? {})
    .filter(([, who]) => who.includes(me))
    .map(([e]) => e);
  return mine.includes(emoji) ? mine.filter((e) => e !== emoji) : [...mine, emoji];
}

/** The id a reaction or reply names: a room's archive id (XEP-0444 §3.1), else the sender's. */
export function referenceId(item: ChatItem): string {
  return item.groupchat ? (item.stanzaId ?? item.id) : item.id;
}

/** The last message that says something, for the conversation list. */
export function preview(c: Conversation): ChatItem | undefined {
  for (let i = c.items.length - 1; i >= 0; i -= 1) {
    const x = c.items[i];
    if (x !== undefined && !x.retracted) return x;
  }
  return undefined;
}
