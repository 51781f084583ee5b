// The chat's protocol core and the conversation model, without a server:
// what each message stanza means, and what a conversation shows after it.
import { describe, expect, it } from 'vitest';
import { applyEvent, applyPage, referenceId, toggledReactions } from '../src/app/chat/model';
import { localpartOf } from '../src/lib/chat/client';
import {
  archiveFin,
  archiveQuery,
  archiveResult,
  chatMessage,
  parseBookmarks,
  parseChat,
  parseDirectInvite,
  parseRosterItems,
  reactionsMessage,
  retraction,
  unwrapCarbon,
  type ChatEvent,
  type ChatItem,
} from '../src/lib/chat/stanzas';
import { parseSlot, slotRefusal } from '../src/lib/upload';
import { parseXml } from './helpers';

const ME = 'alice@localhost';
const ROOM = 'g-1@conference.localhost';
const NICKS = new Map([[ROOM, 'alice']]);

function message(ev: ChatEvent | null): ChatItem {
  if (ev?.kind !== 'message') throw new Error(`not a message: ${JSON.stringify(ev)}`);
  return ev.item;
}

describe('chat stanzas', () => {
  it('reads one-to-one messages both ways, with their ids', () => {
    const inbound = message(
      parseChat(
        parseXml(`<message from='Bob@localhost/phone' to='${ME}/web' type='chat' id='m1'><body>hi</body>
          <origin-id xmlns='urn:xmpp:sid:0' id='o1'/><stanza-id xmlns='urn:xmpp:sid:0' by='${ME}' id='s1'/>
          <stanza-id xmlns='urn:xmpp:sid:0' by='evil@localhost' id='forged'/></message>`),
        ME,
        NICKS,
        1000,
      ),
    );
    expect(inbound).toMatchObject({ conversation: 'bob@localhost', sender: 'bob@localhost', outgoing: false, id: 'o1', stanzaId: 's1', text: 'hi', stamp: 1000 });
    const carbon = unwrapCarbon(
      parseXml(`<message from='${ME}' to='${ME}/web'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>
        <message from='${ME}/phone' to='bob@localhost' type='chat' id='m2'><body>from my phone</body></message></forwarded></sent></message>`),
      ME,
    );
    expect(carbon).not.toBeNull();
    if (carbon === null) return;
    expect(message(parseChat(carbon, ME, NICKS, 0))).toMatchObject({ conversation: 'bob@localhost', outgoing: true, text: 'from my phone' });
    // A carbon from anyone but our own account is a forgery.
    expect(unwrapCarbon(parseXml(`<message from='mallory@localhost'><sent xmlns='urn:xmpp:carbons:2'/></message>`), ME)).toBeNull();
  });

  it('reads room messages, our own by our nick, and keeps the room archive id', () => {
    const m = message(
      parseChat(
        parseXml(`<message from='${ROOM}/alice' type='groupchat' id='x'><body>mine</body>
          <stanza-id xmlns='urn:xmpp:sid:0' by='${ROOM}' id='r1'/></message>`),
        ME,
        NICKS,
        0,
      ),
    );
    expect(m).toMatchObject({ groupchat: true, sender: 'alice', outgoing: true, stanzaId: 'r1' });
    expect(referenceId(m)).toBe('r1');
    expect(parseChat(parseXml(`<message from='${ROOM}' type='groupchat'><subject>s</subject></message>`), ME, NICKS, 0)).toBeNull();
  });

  it('builds a reply with a fallback quote that readers strip', () => {
    const { el, id } = chatMessage({ to: 'bob@localhost', groupchat: false, text: 'yes', replyTo: { id: 'o1', to: 'bob@localhost', quote: 'lunch?' } });
    expect(el.getChildText('body')).toBe('> lunch?\nyes');
    expect(el.getChild('origin-id', 'urn:xmpp:sid:0')?.attrs.id).toBe(id);
    const echoed = parseXml(el.toString().replace('<message ', `<message from='${ME}/web' `));
    expect(message(parseChat(echoed, ME, NICKS, 0))).toMatchObject({ text: 'yes', reply: { id: 'o1', quote: 'lunch?' } });
  });

  it('tells corrections, retractions and reactions from messages', () => {
    const corr = parseChat(
      parseXml(`<message from='bob@localhost/a' type='chat'><body>fixed</body><replace xmlns='urn:xmpp:message-correct:0' id='o1'/></message>`),
      ME,
      NICKS,
      0,
    );
    expect(corr).toMatchObject({ kind: 'correction', target: 'o1', text: 'fixed', sender: 'bob@localhost' });
    const from = (el: ReturnType<typeof retraction>, who: string) => {
      el.attrs.from = who;
      return el;
    };
    const r = parseChat(from(retraction('bob@localhost', false, 'o1'), `${ME}/web`), ME, NICKS, 0);
    expect(r).toMatchObject({ kind: 'retraction', target: 'o1', conversation: 'bob@localhost' });
    const re = parseChat(from(reactionsMessage(ROOM, true, 'r1', ['👍', '🎉']), `${ROOM}/bob`), ME, NICKS, 0);
    expect(re).toMatchObject({ kind: 'reactions', target: 'r1', emojis: ['👍', '🎉'], sender: 'bob' });
    const tomb = parseChat(parseXml(`<message from='bob@localhost/a' type='chat' id='o1'><retracted xmlns='urn:xmpp:message-retract:1' stamp='2026-01-01T00:00:00Z'/></message>`), ME, NICKS, 5, { id: 's9', stamp: 5 });
    expect(message(tomb)).toMatchObject({ retracted: true, stanzaId: 's9', text: '' });
  });

  it('asks the archive for a page or a search, and reads its answers', () => {
    const q = archiveQuery({ queryId: 'q1', with: 'bob@localhost', text: 'budget', before: '', max: 50 });
    const fields = q.getChild('query')?.getChild('x')?.getChildren('field').map((f) => [f.attrs.var, f.getChildText('value')]);
    expect(fields).toEqual([
      ['FORM_TYPE', 'urn:xmpp:mam:2'],
      ['with', 'bob@localhost'],
      ['{urn:xmpp:fulltext:0}fulltext', 'budget'],
    ]);
    expect(q.getChild('query')?.getChild('set')?.getChildText('before')).toBe('');
    const res = archiveResult(
      parseXml(`<message from='${ME}'><result xmlns='urn:xmpp:mam:2' queryid='q1' id='a1'><forwarded xmlns='urn:xmpp:forward:0'>
        <delay xmlns='urn:xmpp:delay' stamp='2026-02-03T04:05:06Z'/><message from='bob@localhost/x' type='chat'><body>old</body></message></forwarded></result></message>`),
      'q1',
    );
    expect(res?.id).toBe('a1');
    expect(res?.stamp).toBe(Date.parse('2026-02-03T04:05:06Z'));
    expect(archiveResult(parseXml(`<message><result xmlns='urn:xmpp:mam:2' queryid='other' id='a1'/></message>`), 'q1')).toBeNull();
    expect(archiveFin(parseXml(`<iq type='result'><fin xmlns='urn:xmpp:mam:2' complete='true'><set xmlns='http://jabber.org/protocol/rsm'><first>a1</first></set></fin></iq>`))).toEqual({ complete: true, first: 'a1' });
  });

  it('takes only web addresses as shared files', () => {
    const withUrl = (u: string) =>
      parseChat(parseXml(`<message from='bob@localhost/x' type='chat'><body>${u}</body><x xmlns='jabber:x:oob'><url>${u}</url></x></message>`), ME, NICKS, 0);
    expect(message(withUrl('https://h/upload/s/cat%20pic.png')).file).toEqual({ url: 'https://h/upload/s/cat%20pic.png', name: 'cat pic.png' });
    expect(message(withUrl('javascript:alert(1)')).file).toBeUndefined();
  });

  it('invites to a call with its room and link (XEP-0482), which readers take back', () => {
    const room = 'c-0123456789abcdef@conference.localhost';
    const { el } = chatMessage({ to: 'bob@localhost', groupchat: false, text: 'Started a call: https://h/c-0123456789abcdef', call: { room, url: 'https://h/c-0123456789abcdef' } });
    const invite = el.getChild('invite', 'urn:xmpp:call-invites:0');
    expect(invite?.getChild('jitsi')?.attrs.room).toBe(room);
    expect(invite?.getChild('external')?.attrs.uri).toBe('https://h/c-0123456789abcdef');
    const echoed = parseXml(el.toString().replace('<message ', `<message from='${ME}/web' `));
    expect(message(parseChat(echoed, ME, NICKS, 0))).toMatchObject({ call: room, text: 'Started a call: https://h/c-0123456789abcdef' });
    // A room that is no bare address is no call.
    const odd = parseXml(`<message from='bob@localhost/x' type='chat'><body>b</body><invite xmlns='urn:xmpp:call-invites:0'><jitsi room='a@b/c'/></invite></message>`);
    expect(message(parseChat(odd, ME, NICKS, 0)).call).toBeUndefined();
  });

  it('reads the roster, bookmarks and invitations', () => {
    expect(parseRosterItems(parseXml(`<query xmlns='jabber:iq:roster'><item jid='Bob@localhost' name='Bob' subscription='both'/><item jid='c@localhost' ask='subscribe'/></query>`))).toEqual([
      { jid: 'bob@localhost', name: 'Bob', subscription: 'both', pending: false },
      { jid: 'c@localhost', name: '', subscription: 'none', pending: true },
    ]);
    expect(parseBookmarks(parseXml(`<items node='urn:xmpp:bookmarks:1'><item id='${ROOM}'><conference xmlns='urn:xmpp:bookmarks:1' name='Team' autojoin='true'><nick>al</nick></conference></item></items>`))).toEqual([
      { jid: ROOM, name: 'Team', autojoin: true, nick: 'al' },
    ]);
    expect(parseDirectInvite(parseXml(`<message from='bob@localhost/x'><x xmlns='jabber:x:conference' jid='${ROOM}' reason='Team'/></message>`))).toEqual({ room: ROOM, from: 'bob@localhost', reason: 'Team' });
  });

  it('takes user names as people type them', () => {
    expect(localpartOf(' Alice ', 'localhost')).toBe('alice');
    expect(localpartOf('alice@LOCALHOST', 'localhost')).toBe('alice');
    expect(localpartOf('alice@example.org', 'localhost')).toBeNull();
    expect(localpartOf('', 'localhost')).toBeNull();
  });
});

describe('conversation model', () => {
  const item = (over: Partial<ChatItem>): ChatItem => ({ conversation: 'bob@localhost', groupchat: false, sender: 'bob@localhost', outgoing: false, id: 'o1', text: 'hi', stamp: 10, ...over });

  it('shows each message once, in time order, whether live or from the archive', () => {
    let items = applyEvent([], { kind: 'message', item: item({ id: 'o2', stamp: 20 }) });
    items = applyPage(items, [
      { kind: 'message', item: item({ id: 'o1', stamp: 10, stanzaId: 's1' }) },
      { kind: 'message', item: item({ id: 'o2', stamp: 20, stanzaId: 's2' }) },
    ]).items;
    expect(items.map((x) => [x.id, x.stanzaId])).toEqual([
      ['o1', 's1'],
      ['o2', 's2'],
    ]);
  });

  it('keeps a correction read before its message until the older page brings it', () => {
    const newer = applyPage([], [
      { kind: 'message', item: item({ id: 'o9', stamp: 90 }) },
      { kind: 'correction', conversation: 'bob@localhost', sender: 'bob@localhost', target: 'o1', text: 'fixed', id: 'c1' },
    ]);
    expect(newer.orphans).toHaveLength(1);
    const older = applyPage(newer.items, [{ kind: 'message', item: item({ id: 'o1', stamp: 10 }) }], newer.orphans);
    expect(older.orphans).toHaveLength(0);
    expect(older.items.map((x) => x.text)).toEqual(['fixed', 'hi']);
  });

  it('applies corrections and retractions from the author only, and reactions per person', () => {
    let items: readonly ChatItem[] = [item({})];
    items = applyEvent(items, { kind: 'correction', conversation: 'bob@localhost', sender: 'mallory@localhost', target: 'o1', text: 'forged', id: 'c0' });
    expect(items[0]?.text).toBe('hi');
    items = applyEvent(items, { kind: 'correction', conversation: 'bob@localhost', sender: 'bob@localhost', target: 'o1', text: 'hello', id: 'c1' });
    expect(items[0]).toMatchObject({ text: 'hello', edited: true });
    items = applyEvent(items, { kind: 'reactions', conversation: 'bob@localhost', sender: ME, target: 'o1', emojis: ['👍'] });
    items = applyEvent(items, { kind: 'reactions', conversation: 'bob@localhost', sender: 'bob@localhost', target: 'o1', emojis: ['👍', '🎉'] });
    expect(items[0]?.reactions).toEqual({ '👍': [ME, 'bob@localhost'], '🎉': ['bob@localhost'] });
    const first = items[0];
    if (first === undefined) return;
    expect(toggledReactions(first, ME, '👍')).toEqual([]);
    expect(toggledReactions(first, ME, '🎉')).toEqual(['👍', '🎉']);
    items = applyEvent(items, { kind: 'retraction', conversation: 'bob@localhost', sender: 'bob@localhost', target: 'o1' });
    expect(items[0]).toMatchObject({ retracted: true, text: '' });
  });
});

describe('file upload slots', () => {
  it('takes the URLs and only the headers XEP-0363 allows', () => {
    const slot = parseSlot(
      parseXml(`<iq type='result'><slot xmlns='urn:xmpp:http:upload:0'><put url='https://h/upload/s/f.png'>
        <header name='Authorization'>Bearer x</header><header name='Host'>evil</header></put><get url='https://h/upload/s/f.png'/></slot></iq>`),
    );
    expect(slot).toEqual({ put: 'https://h/upload/s/f.png', get: 'https://h/upload/s/f.png', headers: { Authorization: 'Bearer x' } });
    expect(() => parseSlot(parseXml(`<iq type='result'><slot xmlns='urn:xmpp:http:upload:0'><put url='javascript:x'/><get url='https://h/x'/></slot></iq>`))).toThrow();
  });

  it('says why a slot was refused', () => {
    const err = (condition: string, text: string) => Object.assign(new Error(condition), { condition, text });
    expect(slotRefusal(err('resource-constraint', 'Upload quota reached')).reason).toBe('quota');
    expect(slotRefusal(err('not-allowed', 'Upload quota reached')).reason).toBe('quota');
    expect(slotRefusal(err('not-acceptable', 'File too large: the limit is 5 bytes')).reason).toBe('too-large');
    expect(slotRefusal(err('forbidden', 'Guests cannot upload files')).reason).toBe('forbidden');
  });
});
