import { describe, expect, it } from 'vitest';
import { conferenceRequest, parseConferenceResult, retryDelay } from '../src/lib/focus';
import { parseMeetConfig, roomFromPath } from '../src/lib/config';
import {
  chatMessage,
  isFocusOccupant,
  leavePresence,
  newEndpointId,
  occupantPresence,
  ownerConfigQuery,
  parseChatMessage,
  parseOccupantPresence,
} from '../src/lib/muc';
import { parseXml } from './helpers';

const ROOM = 'room1@conference.localhost';

describe('meet config and room names', () => {
  it('accepts the served config and refuses incomplete ones', () => {
    const cfg = {
      domain: 'localhost',
      muc: 'conference.localhost',
      focus: 'focus.localhost',
      websocket: 'wss://localhost:8443/xmpp-websocket',
    };
    expect(parseMeetConfig(cfg)).toEqual(cfg);
    expect(() => parseMeetConfig({ ...cfg, focus: '' })).toThrow(/focus/);
    expect(() => parseMeetConfig({ ...cfg, websocket: 'https://x' })).toThrow(/websocket/);
    expect(() => parseMeetConfig([])).toThrow();
    expect(parseMeetConfig({ ...cfg, guestDomain: 'guest.localhost' }).guestDomain).toBe('guest.localhost');
    expect(() => parseMeetConfig({ ...cfg, guestDomain: 3 })).toThrow(/guestDomain/);
    expect(parseMeetConfig({ ...cfg, installable: true }).installable).toBe(true);
    expect(parseMeetConfig({ ...cfg, installable: 'yes' }).installable).toBeUndefined();
  });

  it('takes the first path segment, decoded and lowercased', () => {
    expect(roomFromPath('/MyRoom')).toBe('myroom');
    expect(roomFromPath('/Team%20Sync')).toBeNull();
    expect(roomFromPath('/caf%C3%A9/extra')).toBe('café');
    expect(roomFromPath('/')).toBeNull();
    expect(roomFromPath('')).toBeNull();
    expect(roomFromPath('/a@b')).toBeNull();
    expect(roomFromPath('/%E0%A4%A')).toBeNull();
  });
});

describe('the conference request', () => {
  it('is an IQ set to the focus naming the room', () => {
    const iq = conferenceRequest('focus.localhost', ROOM, 'uid1');
    expect(iq.toString()).toBe(
      '<iq type="set" to="focus.localhost"><conference xmlns="http://jitsi.org/protocol/focus" room="room1@conference.localhost" machine-uid="uid1">' +
        '<property name="startAudioMuted" value="false"/><property name="startVideoMuted" value="false"/>' +
        '<property name="rtcstatsEnabled" value="false"/></conference></iq>',
    );
  });

  it('reads ready and focusjid, and backs off', () => {
    const r = parseConferenceResult(
      parseXml(
        "<iq type='result'><conference xmlns='http://jitsi.org/protocol/focus' ready='true' focusjid='focus.localhost/focus' room='room1@conference.localhost'/></iq>",
      ),
    );
    expect(r).toEqual({ ready: true, focusJid: 'focus.localhost/focus' });
    expect(
      parseConferenceResult(parseXml("<conference xmlns='http://jitsi.org/protocol/focus' ready='false'/>")).ready,
    ).toBe(false);
    expect(() => parseConferenceResult(parseXml("<iq type='result'/>"))).toThrow();
    expect([0, 1, 2, 3, 4, 5].map(retryDelay)).toEqual([500, 1000, 2000, 4000, 8000, 8000]);
  });
});

describe('MUC presence', () => {
  it('joins with the muc element, nick and SourceInfo', () => {
    const p = occupantPresence(
      `${ROOM}/a1b2c3d4`,
      {
        displayName: 'Alice <A>',
        sources: { 'a1b2c3d4-a0': { muted: false }, 'a1b2c3d4-v0': { muted: true, videoType: 'camera' } },
        audioMuted: false,
        videoMuted: true,
        properties: { raisedHand: '1764950400000' },
      },
      true,
    );
    const back = parseXml(p.toString());
    expect(back.attrs.to).toBe(`${ROOM}/a1b2c3d4`);
    expect(back.getChild('x', 'http://jabber.org/protocol/muc')).toBeDefined();
    expect(back.getChildText('nick', 'http://jabber.org/protocol/nick')).toBe('Alice <A>');
    expect(JSON.parse(back.getChildText('SourceInfo') ?? '')).toEqual({
      'a1b2c3d4-a0': { muted: false },
      'a1b2c3d4-v0': { muted: true, videoType: 'camera' },
    });
    expect(back.getChildText('videomuted')).toBe('true');
    expect(back.getChildText('jitsi_participant_raisedHand')).toBe('1764950400000');
    const update = occupantPresence(`${ROOM}/a1b2c3d4`, { displayName: 'A', sources: {}, audioMuted: false, videoMuted: false }, false);
    expect(update.getChild('x')).toBeUndefined();
    expect(leavePresence(`${ROOM}/a1b2c3d4`).toString()).toBe(`<presence to="${ROOM}/a1b2c3d4" type="unavailable"/>`);
  });

  it('reads an occupant with real JID, statuses and sources', () => {
    const p = parseOccupantPresence(
      parseXml(`<presence from='${ROOM}/b0b0b0b0' to='me@localhost/r'>
        <nick xmlns='http://jabber.org/protocol/nick'>Bob</nick>
        <SourceInfo>{"b0b0b0b0-a0":{"muted":true},"b0b0b0b0-v0":{"muted":false,"videoType":"camera"},"bad":3}</SourceInfo>
        <jitsi_participant_raisedHand>1764950400000</jitsi_participant_raisedHand>
        <x xmlns='http://jabber.org/protocol/muc#user'><item jid='anon1@localhost/xyz' role='participant' affiliation='none'/><status code='100'/></x>
      </presence>`),
      ROOM,
    );
    expect(p).toEqual({
      nick: 'b0b0b0b0',
      type: 'available',
      displayName: 'Bob',
      realJid: 'anon1@localhost/xyz',
      role: 'participant',
      affiliation: 'none',
      statuses: [100],
      sources: { 'b0b0b0b0-a0': { muted: true }, 'b0b0b0b0-v0': { muted: false, videoType: 'camera' } },
      properties: { raisedHand: '1764950400000' },
      destroyed: false,
      inMeeting: true,
    });
    expect(parseOccupantPresence(parseXml("<presence from='other@conference.localhost/x'/>"), ROOM)).toBeNull();
    expect(parseOccupantPresence(parseXml(`<presence from='${ROOM}/x' type='subscribe'/>`), ROOM)).toBeNull();
  });

  it('reads kicks, errors and self-presence', () => {
    const kick = parseOccupantPresence(
      parseXml(`<presence from='${ROOM}/me' type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'>
        <item role='none'><actor nick='mod'/><reason>bye</reason></item><status code='307'/><status code='110'/></x></presence>`),
      ROOM,
    );
    expect(kick?.type).toBe('unavailable');
    expect(kick?.statuses).toEqual([307, 110]);
    expect([kick?.actor, kick?.reason]).toEqual(['mod', 'bye']);
    const err = parseOccupantPresence(
      parseXml(`<presence from='${ROOM}/me' type='error'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>`),
      ROOM,
    );
    expect(err?.error).toBe('conflict');
  });

  it('trusts as focus only nick focus with the focusjid as real JID', () => {
    const focus = (jid?: string) => ({
      nick: 'focus',
      type: 'available' as const,
      statuses: [],
      sources: {},
      properties: {},
      destroyed: false,
      inMeeting: false,
      ...(jid !== undefined ? { realJid: jid } : {}),
    });
    expect(isFocusOccupant(focus('focus.localhost/focus'), 'focus.localhost/focus')).toBe(true);
    expect(isFocusOccupant(focus('focus.localhost'), 'focus.localhost')).toBe(true);
    expect(isFocusOccupant(focus('evil@localhost/focus'), 'focus.localhost/focus')).toBe(false);
    expect(isFocusOccupant(focus(), 'focus.localhost/focus')).toBe(false);
    expect(isFocusOccupant({ ...focus('focus.localhost/focus'), nick: 'b0b0b0b0' }, 'focus.localhost/focus')).toBe(false);
  });

  it('makes endpoint ids of 8 lowercase hex characters', () => {
    for (let i = 0; i < 20; i++) expect(newEndpointId()).toMatch(/^[0-9a-f]{8}$/);
  });

  it('submits whois=anyone in the owner form', () => {
    const q = ownerConfigQuery();
    expect(q.attrs.xmlns).toBe('http://jabber.org/protocol/muc#owner');
    const fields = q.getChild('x', 'jabber:x:data')?.getChildren('field') ?? [];
    expect(fields.map((f) => [f.attrs.var, f.getChildText('value')])).toEqual([
      ['FORM_TYPE', 'http://jabber.org/protocol/muc#roomconfig'],
      ['muc#roomconfig_whois', 'anyone'],
    ]);
  });
});

describe('chat', () => {
  it('writes room and private messages and reads them back', () => {
    expect(chatMessage(ROOM, 'hi & bye', false, 'm1').toString()).toBe(
      `<message to="${ROOM}" type="groupchat" id="m1"><body>hi &amp; bye</body><origin-id xmlns="urn:xmpp:sid:0" id="m1"/></message>`,
    );
    // A shared file: the body is its URL, repeated as XEP-0066's.
    const f = chatMessage(ROOM, 'https://h/upload/s/a%20b.png', false, 'm4', '', true);
    expect(f.getChild('x', 'jabber:x:oob')?.getChildText('url')).toBe('https://h/upload/s/a%20b.png');
    expect(parseChatMessage(parseXml(`<message from='${ROOM}/b' type='groupchat'>${f.getChild('body')?.toString() ?? ''}${f.getChild('x')?.toString() ?? ''}</message>`), ROOM)?.file).toEqual({
      url: 'https://h/upload/s/a%20b.png',
      name: 'a b.png',
    });
    expect(chatMessage(`${ROOM}/b0b0b0b0`, 'psst', true, 'm2').attrs.type).toBe('chat');
    expect(chatMessage(ROOM, 'hi', false, 'm3', 'Alice').getChildText('nick', 'http://jabber.org/protocol/nick')).toBe('Alice');
    const m = parseChatMessage(
      parseXml(`<message from='${ROOM}/b0b0b0b0' type='groupchat' id='x'><body>hello</body>
        <nick xmlns='http://jabber.org/protocol/nick'>Bob</nick>
        <delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/></message>`),
      ROOM,
    );
    expect(m).toEqual({ from: 'b0b0b0b0', text: 'hello', private: false, delayed: true, stamp: '2026-01-01T00:00:00Z', id: 'x', nick: 'Bob' });
    // The room's occupant-id (XEP-0421) on a message and on a presence: how
    // our own messages from an earlier visit are told apart.
    const stamped = parseChatMessage(
      parseXml(`<message from='${ROOM}/old1' type='groupchat'><body>before</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='OID1'/></message>`),
      ROOM,
    );
    expect(stamped?.occupantId).toBe('OID1');
    const self = parseOccupantPresence(parseXml(`<presence from='${ROOM}/new1'><occupant-id xmlns='urn:xmpp:occupant-id:0' id='OID1'/></presence>`), ROOM);
    expect(self?.occupantId).toBe('OID1');
    expect(parseChatMessage(parseXml(`<message from='${ROOM}' type='groupchat'><subject>s</subject></message>`), ROOM)).toBeNull();
    expect(parseChatMessage(parseXml(`<message from='${ROOM}/x' type='error'><body>e</body></message>`), ROOM)).toBeNull();
  });
});
