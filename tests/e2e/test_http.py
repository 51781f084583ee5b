"""HTTPS endpoints: /health, /metrics, and HTTP-level behaviour of BOSH."""

import gzip
import re
import urllib.request

import pytest

from harness import LOOPBACK, https_get, insecure_ssl_context


def https_post(port, path, body: bytes, content_type="text/xml; charset=utf-8", timeout=10.0):
    req = urllib.request.Request(
        f"https://{LOOPBACK}:{port}{path}", data=body, method="POST", headers={"Content-Type": content_type}
    )
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=insecure_ssl_context()), urllib.request.ProxyHandler({})
    )
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.conclave_only
def test_health(server):
    status, body = https_get(server.http_port, "/health")
    assert status == 200
    assert body.strip() == b"ok"


@pytest.mark.conclave_only
def test_metrics_prometheus_text(server):
    status, body = https_get(server.http_port, "/metrics")
    assert status == 200
    text = body.decode()
    samples = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert samples, "no metric samples"
    for ln in samples:
        assert re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+0-9.eEinfNa]+( \d+)?$", ln), ln


def test_unknown_path_404(server):
    # One segment names a meeting (/<Room>, as in Jitsi Meet), so an
    # unknown path is one no room could have.
    for path in ("/definitely/not-here", "/.definitely-not-here"):
        status, _ = https_get(server.http_port, path)
        assert status == 404, path


def test_bosh_session_create_and_bad_sid(server):
    """XEP-0124: a session-creation request gets sid/wait; an unknown sid is terminated item-not-found."""
    body = (
        "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' content='text/xml; charset=utf-8' "
        f"hold='1' rid='1000' to='{server.domain}' ver='1.6' wait='5' xml:lang='en' xmpp:version='1.0'/>"
    )
    status, resp = https_post(server.http_port, "/http-bind", body.encode())
    assert status == 200, resp
    text = resp.decode()
    assert re.search(r"\bsid=['\"][^'\"]+['\"]", text), text
    assert "urn:ietf:params:xml:ns:xmpp-sasl" in text or "stream:features" in text or "features" in text, text

    bad = (
        "<body xmlns='http://jabber.org/protocol/httpbind' rid='1001' sid='no-such-session-id'>"
        "<message to='x@localhost'><body>x</body></message></body>"
    )
    status, resp = https_post(server.http_port, "/http-bind", bad.encode())
    text = resp.decode(errors="replace")
    # XEP-0124 §17.3: either HTTP 404 (legacy) or a terminate body with item-not-found
    assert status == 404 or (
        status == 200 and "type='terminate'" in text.replace('"', "'") and "item-not-found" in text
    ), (status, text)


def test_bosh_malformed_body(server):
    status, resp = https_post(server.http_port, "/http-bind", b"<body xmlns='http://jabber.org/protocol/httpbind' <<<")
    text = resp.decode(errors="replace")
    assert status in (400, 404) or (status == 200 and "terminate" in text and "bad-request" in text), (status, text)


def _get_with_headers(port, path, headers, timeout=5.0):
    req = urllib.request.Request(f"https://{LOOPBACK}:{port}{path}", headers=headers)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=insecure_ssl_context()), urllib.request.ProxyHandler({})
    )
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.mark.conclave_only
def test_websocket_url_answers_lib_jitsi_meets_keep_alive(server):
    """lib-jitsi-meet fetches the WebSocket URL itself over HTTPS every 60-120 s
    (XmppConnection.ts `_keepAliveAndCheckShard`) and treats anything but a 2xx
    as an error: a plain GET gets 200, uncached. A request that does ask for an
    upgrade, but not to a WebSocket, is still told what is required."""
    status, headers, body = _get_with_headers(server.http_port, "/xmpp-websocket", {})
    assert status == 200, body
    assert headers.get("Cache-Control") == "no-store"
    assert b"xmpp" in body
    status, headers, _ = _get_with_headers(
        server.http_port, "/xmpp-websocket", {"Connection": "Upgrade", "Upgrade": "h2c"}
    )
    assert status == 426
    assert headers.get("Upgrade") == "websocket"


def https_get_full(port, path, timeout=5.0):
    req = urllib.request.Request(f"https://{LOOPBACK}:{port}{path}")
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=insecure_ssl_context()), urllib.request.ProxyHandler({})
    )
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.mark.conclave_only
def test_the_meeting_page_and_its_assets_are_served_from_the_server_itself(server):
    """https://host/<Room> is the web client (built into the binary), under
    a Content-Security-Policy that lets it load and connect only to this
    server; its hashed assets are cacheable for good; /meet-config.json
    names this server's XMPP domain, guest domain, rooms, focus and
    WebSocket. Paths that cannot be room names are not pages."""
    for path in ("/", "/SomeRoom", "/team-2026_q4"):
        status, headers, body = https_get_full(server.http_port, path)
        assert status == 200, path
        assert headers["content-type"].startswith("text/html")
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp
        assert b"/assets/" in body
    page = body.decode()
    scripts = re.findall(r'src="(/assets/[^"]+\.js)"', page)
    assert scripts, page
    # What the page loads at first: its scripts and the chunks it preloads
    # (the lazy ones, such as the emoji data, come later if ever).
    first_load = scripts + re.findall(r'rel="modulepreload"[^>]*href="(/assets/[^"]+\.js)"', page)
    compressed = 0
    for s in first_load:
        status, headers, js = https_get_full(server.http_port, s)
        assert status == 200 and headers["content-type"].startswith("text/javascript")
        assert "immutable" in headers["cache-control"]
        compressed += len(gzip.compress(js, 9))
    # The budget: under 300 KB of compressed JavaScript.
    assert compressed < 300 * 1024, f"first load: {compressed} bytes of gzipped JavaScript"
    status, headers, body = https_get_full(server.http_port, "/meet-config.json")
    assert status == 200
    import json

    cfg = json.loads(body)
    assert cfg == {
        "domain": server.domain,
        "guestDomain": server.guest_domain,
        "muc": f"conference.{server.domain}",
        "focus": f"focus.{server.domain}",
        "websocket": f"wss://{LOOPBACK}:{server.http_port}/xmpp-websocket",
        "installable": False,
        "uploads": True,
        "guestUploads": False,
    }
    for path in ("/.env", "/a%20b", "/assets/nope.js", "/x/y"):
        assert https_get_full(server.http_port, path)[0] == 404, path
