// TURN servers from the XMPP server (XEP-0215, `urn:xmpp:extdisco:2`), as
// lib-jitsi-meet gets them: only TURN entries matter (the bridge is reached
// directly or through TURN; STUN would tell it nothing), and a server that
// has none, or refuses, only means no relay.
import { xml, type Element } from '@xmpp/client';

export const NS_EXTDISCO = 'urn:xmpp:extdisco:2';

/** `<iq type=get to=domain><services xmlns=extdisco:2/></iq>` */
export function servicesRequest(domain: string): Element {
  return xml('iq', { type: 'get', to: domain }, xml('services', { xmlns: NS_EXTDISCO }));
}

/** The TURN entries of a `<services/>` answer (or the IQ around it). */
export function parseTurnServers(el: Element): RTCIceServer[] {
  const services = el.is('services', NS_EXTDISCO) ? el : el.getChild('services', NS_EXTDISCO);
  if (!services) return [];
  const out: RTCIceServer[] = [];
  for (const s of services.getChildren('service', NS_EXTDISCO)) {
    const { type, host, port, transport, username, password } = s.attrs;
    if ((type !== 'turn' && type !== 'turns') || !host || !/^\d{1,5}$/.test(port ?? '')) continue;
    // An IPv6 literal needs brackets in a URI (RFC 7065 §3.1).
    const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
    const proto = transport === 'tcp' ? '?transport=tcp' : transport === 'udp' ? '?transport=udp' : '';
    const server: RTCIceServer = { urls: `${type}:${h}:${port ?? ''}${proto}` };
    if (username !== undefined) server.username = username;
    if (password !== undefined) server.credential = password;
    out.push(server);
  }
  return out;
}
