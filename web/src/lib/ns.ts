// XML namespaces of the protocols spoken here (Jitsi's Jingle dialect,
// XEP-0045 MUC and a few Jitsi extensions).

export const NS_JINGLE = 'urn:xmpp:jingle:1';
export const NS_JINGLE_ERRORS = 'urn:xmpp:jingle:errors:1';
export const NS_RTP = 'urn:xmpp:jingle:apps:rtp:1';
export const NS_RTCP_FB = 'urn:xmpp:jingle:apps:rtp:rtcp-fb:0';
export const NS_HDREXT = 'urn:xmpp:jingle:apps:rtp:rtp-hdrext:0';
export const NS_SSMA = 'urn:xmpp:jingle:apps:rtp:ssma:0';
export const NS_ICE_UDP = 'urn:xmpp:jingle:transports:ice-udp:1';
export const NS_DTLS = 'urn:xmpp:jingle:apps:dtls:0';
export const NS_GROUPING = 'urn:xmpp:jingle:apps:grouping:0';
export const NS_JITMEET = 'http://jitsi.org/jitmeet';
export const NS_COLIBRI = 'http://jitsi.org/protocol/colibri';
export const NS_FOCUS = 'http://jitsi.org/protocol/focus';

export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
export const NS_NICK = 'http://jabber.org/protocol/nick';
export const NS_DATA = 'jabber:x:data';
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
export const NS_DELAY = 'urn:xmpp:delay';
/** XEP-0421: an occupant's id in a room, the same for each of its sessions there. */
export const NS_OCCUPANT_ID = 'urn:xmpp:occupant-id:0';
export const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
export const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
/** Jitsi's force-mute IQs, between moderator, focus and participant. */
export const NS_MUTE_AUDIO = 'http://jitsi.org/jitmeet/audio';
export const NS_MUTE_VIDEO = 'http://jitsi.org/jitmeet/video';
