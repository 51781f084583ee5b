"""XEP-0479 (XMPP Compliance Suites 2023), Advanced Server level, for the
Core, Web, IM and Mobile categories (and A/V's one server row, 0215).

REQUIRED is the suite's server-side requirements as things a client can
observe: a disco#info feature or identity on the server's domain, an
account's bare JID, the MUC service, a room or the upload service, or an
element in the stream features. Each row names the specification, so it
can be checked against the suite's tables (§2, "Compliance Categories").
Rows the suite marks client-only or N/A for servers are not here (0084,
0245, 0184, 0085, 0308, 0234/0261, and 0156 connection discovery, which is
"N/A" at Advanced Server). Behaviour behind a row is tested in the test
file named in its comment; this file checks that it is all advertised.
"""

import socket

import pytest

from clients import close_all, login, run
from harness import NS_SASL, NS_TLS, LOOPBACK, RawStream, insecure_ssl_context, unique

pytestmark = pytest.mark.conclave_only

# (category, spec, where, what)
#   where: server | account | muc | room | upload   -> disco#info feature var
#          *-identity                                -> (category, type)
#          stream                                    -> stream feature element (any stage)
REQUIRED = [
    # Core
    ("Core", "RFC 7590", "stream", f"{{{NS_TLS}}}starttls"),  # TLS (test_protocol.py)
    ("Core", "XEP-0030", "server", "http://jabber.org/protocol/disco#info"),
    ("Core", "XEP-0030", "server", "http://jabber.org/protocol/disco#items"),
    ("Core", "XEP-0115", "stream", "{http://jabber.org/protocol/caps}c"),
    ("Core", "XEP-0163", "account-identity", ("pubsub", "pep")),
    ("Core", "XEP-0163", "account", "http://jabber.org/protocol/pubsub#publish"),
    ("Core", "XEP-0163", "account", "http://jabber.org/protocol/pubsub#auto-create"),
    ("Core", "XEP-0163", "account", "http://jabber.org/protocol/pubsub#last-published"),
    # XEP-0368 (direct TLS) and XEP-0114 (components): test_direct_tls below,
    # test_components.py.
    # Web: RFC 7395 and XEP-0206: test_web_connection_mechanisms below.
    # IM
    ("IM", "RFC 6121", "stream", "{urn:xmpp:features:rosterver}ver"),  # §2.6 (test_roster_presence.py)
    ("IM", "XEP-0398", "account", "urn:xmpp:pep-vcard-conversion:0"),  # + 0153: test_avatar.py
    ("IM", "XEP-0054", "server", "vcard-temp"),
    ("IM", "XEP-0280", "server", "urn:xmpp:carbons:2"),
    ("IM", "XEP-0191", "server", "urn:xmpp:blocking"),
    ("IM", "XEP-0045", "muc-identity", ("conference", "text")),
    ("IM", "XEP-0045", "muc", "http://jabber.org/protocol/muc"),
    # XEP-0249 direct invitations are messages between clients: routed as any
    # message (test_muc.py, invitations).
    ("IM", "XEP-0048", "server", "jabber:iq:private"),  # bookmarks in private XML
    ("IM", "XEP-0313 (MUC)", "room", "urn:xmpp:mam:2"),
    ("IM", "XEP-0402", "account", "urn:xmpp:bookmarks:1#compat"),
    ("IM", "XEP-0410", "room", "http://jabber.org/protocol/muc#self-ping-optimization"),
    ("IM", "XEP-0223", "account", "http://jabber.org/protocol/pubsub#publish-options"),
    ("IM", "XEP-0223", "account", "http://jabber.org/protocol/pubsub#persistent-items"),
    ("IM", "XEP-0223", "account", "http://jabber.org/protocol/pubsub#access-whitelist"),
    ("IM", "XEP-0049", "server", "jabber:iq:private"),
    ("IM", "XEP-0198", "stream", "{urn:xmpp:sm:3}sm"),
    ("IM", "XEP-0313", "account", "urn:xmpp:mam:2"),
    ("IM", "XEP-0363", "upload-identity", ("store", "file")),
    ("IM", "XEP-0363", "upload", "urn:xmpp:http:upload:0"),
    # Mobile
    ("Mobile", "XEP-0198", "stream", "{urn:xmpp:sm:3}sm"),
    ("Mobile", "XEP-0352", "stream", "{urn:xmpp:csi:0}csi"),
    ("Mobile", "XEP-0357", "account", "urn:xmpp:push:0"),
    # A/V (the suite's only server row there)
    ("A/V", "XEP-0215", "server", "urn:xmpp:extdisco:2"),
]


def stream_features(server, jid, pw):
    """Every child of the stream features, before and after TLS and SASL."""
    seen = set()
    with RawStream(server) as r:
        for feats in (r.open(),):
            seen |= {c.tag for c in feats}
        r.starttls()
        seen |= {c.tag for c in r.open()}
        assert r.auth_plain(jid.split("@")[0], pw).tag == f"{{{NS_SASL}}}success"
        seen |= {c.tag for c in r.open()}
    return seen


async def disco(c, jid, node=None):
    info = await c.plugin["xep_0030"].get_info(jid=jid, node=node, timeout=10)
    features = set(info["disco_info"]["features"])
    identities = {(i[0], i[1]) for i in info["disco_info"]["identities"]}
    return features, identities


def test_advanced_server_features_are_advertised(server):
    jid, pw = server.add_user()
    room = f"{unique('room')}@conference.{server.domain}"
    stream = stream_features(server, jid, pw)

    async def scenario():
        c = await login(server, jid, pw)
        c.register_plugin("xep_0045")
        try:
            await c.plugin["xep_0045"].join_muc_wait(room, "me", timeout=10)
            found = {}
            for where, target in (
                ("server", server.domain),
                ("account", c.boundjid.bare),
                ("muc", f"conference.{server.domain}"),
                ("room", room),
                ("upload", f"upload.{server.domain}"),
            ):
                found[where], found[f"{where}-identity"] = await disco(c, target)
            found["stream"] = stream
            missing = [
                f"{cat} {spec}: {what} on {where}"
                for cat, spec, where, what in REQUIRED
                if what not in found[where]
            ]
            assert not missing, "XEP-0479 Advanced Server gaps:\n" + "\n".join(missing)
        finally:
            await close_all(c)

    run(scenario())


def test_direct_tls(server):
    """XEP-0368: the server accepts TLS from the first byte."""
    with RawStream(server, direct_tls=True) as r:
        feats = r.open()
        assert feats.find(f"{{{NS_TLS}}}starttls") is None
        assert r.mechanisms()


def test_web_connection_mechanisms(server):
    """RFC 7395 (a WebSocket upgrade with the xmpp subprotocol) and XEP-0206
    (a BOSH session) on the HTTPS port. (Both are driven end to end by
    tests/node.)"""
    sock = insecure_ssl_context().wrap_socket(
        socket.create_connection((LOOPBACK, server.http_port), timeout=5), server_hostname=server.domain
    )
    try:
        sock.sendall(
            (
                f"GET /xmpp-websocket HTTP/1.1\r\nHost: {server.domain}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n"
            ).encode()
        )
        head = sock.recv(4096).decode(errors="replace").lower()
    finally:
        sock.close()
    assert head.startswith("http/1.1 101"), head
    assert "sec-websocket-protocol: xmpp" in head, head

    from test_http import https_post

    body = (
        "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' content='text/xml; charset=utf-8' "
        f"hold='1' rid='1000' to='{server.domain}' ver='1.6' wait='5' xml:lang='en' xmpp:version='1.0'/>"
    )
    status, resp = https_post(server.http_port, "/http-bind", body.encode())
    assert status == 200 and b"sid=" in resp, resp


def test_stream_management_resumption_is_offered(server):
    """XEP-0198 §5: Advanced Server's stream management, with resumption
    (what mobile clients rely on)."""
    jid, pw = server.add_user()
    with RawStream(server) as r:
        r.login(jid.split("@")[0], pw)
        r.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        el = r.wait_for(lambda e: e.tag in ("{urn:xmpp:sm:3}enabled", "{urn:xmpp:sm:3}failed"))
        assert el.tag == "{urn:xmpp:sm:3}enabled"
        assert el.get("resume") in ("true", "1") and el.get("id"), "resumption not offered"
