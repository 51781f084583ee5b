import { describe, expect, it } from 'vitest';
import { adminItem, destroyRoom, invite, muteRequest, parseMuteNotice, parseRoomState, passwordConfig } from '../src/lib/moderation';
import { isConfigChange, isInvitation, occupantPresence, parseOccupantPresence } from '../src/lib/muc';
import { parseXml } from './helpers';

const ROOM = 'room1@conference.localhost';

describe('moderation stanzas', () => {
  it('writes what lib-jitsi-meet writes', () => {
    expect(muteRequest(`${ROOM}/b0b0`, 'audio', true).toString()).toBe(
      `<mute xmlns="http://jitsi.org/jitmeet/audio" jid="${ROOM}/b0b0">true</mute>`,
    );
    expect(adminItem({ nick: 'b0b0', role: 'none' }, 'bye').toString()).toBe(
      '<query xmlns="http://jabber.org/protocol/muc#admin"><item nick="b0b0" role="none"><reason>bye</reason></item></query>',
    );
    const lock = passwordConfig('s3cret').toString();
    expect(lock).toContain('<field var="muc#roomconfig_passwordprotectedroom"><value>1</value></field>');
    expect(lock).toContain('<field var="muc#roomconfig_roomsecret"><value>s3cret</value></field>');
    expect(passwordConfig('').toString()).toContain('<value>0</value>');
    expect(destroyRoom('').toString()).toBe('<query xmlns="http://jabber.org/protocol/muc#owner"><destroy/></query>');
    expect(invite(ROOM, 'k@guest.localhost/r').toString()).toBe(
      `<message to="${ROOM}"><x xmlns="http://jabber.org/protocol/muc#user"><invite to="k@guest.localhost/r"/></x></message>`,
    );
    expect(occupantPresence(`${ROOM}/a`, { displayName: 'A', sources: {}, audioMuted: false, videoMuted: false }, true, 'pw').toString()).toContain(
      '<x xmlns="http://jabber.org/protocol/muc"><password>pw</password></x>',
    );
  });

  it('reads the focus mute, the lobby refusal, invitations and room state', () => {
    expect(parseMuteNotice(parseXml("<mute xmlns='http://jitsi.org/jitmeet/video' actor='x'>true</mute>"))).toEqual({
      kind: 'video',
      muted: true,
      actor: 'x',
    });
    expect(parseMuteNotice(parseXml("<mute xmlns='urn:other'>true</mute>"))).toBeNull();
    const refused = parseOccupantPresence(
      parseXml(`<presence from='${ROOM}/a' type='error'><error type='auth'>
        <registration-required xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
        <lobbyroom xmlns='http://jitsi.org/jitmeet'>room1@lobby.localhost</lobbyroom></error></presence>`),
      ROOM,
    );
    expect(refused?.error).toBe('registration-required');
    expect(refused?.lobbyRoom).toBe('room1@lobby.localhost');
    expect(isInvitation(parseXml(`<message from='${ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'><invite from='m@x'/></x></message>`), ROOM)).toBe(true);
    expect(isInvitation(parseXml(`<message from='evil@x'><x xmlns='http://jabber.org/protocol/muc#user'><invite/></x></message>`), ROOM)).toBe(false);
    expect(isConfigChange(parseXml(`<message from='${ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'><status code='104'/></x></message>`), ROOM)).toBe(true);
    expect(
      parseRoomState(
        parseXml(`<iq type='result'><query xmlns='http://jabber.org/protocol/disco#info'>
          <feature var='muc_membersonly'/><feature var='muc_unsecured'/>
          <x xmlns='jabber:x:data' type='result'><field var='muc#roominfo_lobbyroom'><value>room1@lobby.localhost</value></field></x>
          </query></iq>`),
      ),
    ).toEqual({ locked: false, lobby: true, lobbyRoom: 'room1@lobby.localhost' });
  });
});
