import { describe, expect, it } from 'vitest';
import { parseTurnServers, servicesRequest } from '../src/lib/extdisco';
import { parseXml } from './helpers';

describe('XEP-0215 TURN servers', () => {
  it('asks the domain for its services', () => {
    const iq = servicesRequest('guest.localhost');
    expect(iq.attrs).toMatchObject({ type: 'get', to: 'guest.localhost' });
    expect(iq.getChild('services', 'urn:xmpp:extdisco:2')).toBeDefined();
  });

  it('keeps TURN entries with their credentials and drops STUN and junk', () => {
    // As Conclave answers with `turn.secret` set (crates/server/src/modules/extdisco.rs).
    const el = parseXml(
      `<iq type='result' xmlns='jabber:client'><services xmlns='urn:xmpp:extdisco:2'>
        <service type='stun' transport='udp' host='turn.example' port='3478'/>
        <service type='turn' transport='udp' host='turn.example' port='3478' username='1700000000:g' password='pw' restricted='1'/>
        <service type='turn' transport='tcp' host='2001:db8::1' port='3478' username='u' password='p'/>
        <service type='turns' transport='tcp' host='turn.example' port='5349'/>
        <service type='turn' host='turn.example' port='not-a-port'/>
      </services></iq>`,
    );
    expect(parseTurnServers(el)).toEqual([
      { urls: 'turn:turn.example:3478?transport=udp', username: '1700000000:g', credential: 'pw' },
      { urls: 'turn:[2001:db8::1]:3478?transport=tcp', username: 'u', credential: 'p' },
      { urls: 'turns:turn.example:5349?transport=tcp' },
    ]);
  });

  it('an answer without services gives no servers', () => {
    expect(parseTurnServers(parseXml(`<iq type='result' xmlns='jabber:client'/>`))).toEqual([]);
  });
});
