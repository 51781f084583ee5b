"""XEP-0363 HTTP File Upload: slots from upload.<host>, PUT and GET over the server's own HTTPS.

The slot requests go through slixmpp's xep_0363 plugin; the HTTP side is done
with http.client (the plugin's own upload helper needs aiohttp, which the test
venv does not carry), so every status code and header can be checked.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import secrets
import sys
import time
import types
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

if "aiohttp" not in sys.modules:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        # xep_0363 imports aiohttp at module level, for upload_file() only; these
        # tests never call that, so a stand-in lets the plugin load.
        _stub = types.ModuleType("aiohttp")

        class _NoClientSession:
            def __init__(self, *a, **kw):
                raise RuntimeError("aiohttp is not installed: PUT with http.client instead")

        _stub.ClientSession = _NoClientSession
        sys.modules["aiohttp"] = _stub

from clients import Client, IqError, close_all, login, run  # noqa: E402
from harness import insecure_ssl_context  # noqa: E402

pytestmark = pytest.mark.conclave_only

NS_UPLOAD = "urn:xmpp:http:upload:0"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
WEEK = 7 * 86400


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    """One HTTPS request (certificate not checked); returns (status, headers, body)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=insecure_ssl_context(), timeout=15)
    try:
        conn.putrequest(method, u.path, skip_accept_encoding=True)
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body:
            conn.send(body)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


async def ahttp(*a, **kw):
    return await asyncio.to_thread(request, *a, **kw)


async def uploader(server, user) -> Client:
    c = await login(server, *user)
    c.register_plugin("xep_0363")
    return c


async def slot(c: Client, server, name: str, size: int, ctype: str = "application/octet-stream"):
    """Request a slot; returns (put_url, put_headers, get_url)."""
    iq = await c.plugin["xep_0363"].request_slot(f"upload.{server.domain}", name, size, ctype, timeout=10)
    s = iq["http_upload_slot"]
    headers = {h["name"]: h["value"] for h in s["put"]["headers"]}
    return s["put"]["url"], headers, s["get"]["url"]


async def put(url: str, slot_headers: dict, data: bytes, ctype="application/octet-stream", **extra):
    return await ahttp("PUT", url, data, {"Content-Type": ctype, **slot_headers, **extra})


def stored_files(server) -> list[str]:
    d = server.data_dir / "uploads"
    return sorted(os.listdir(d)) if d.exists() else []


def upload_error(e: IqError) -> tuple[str, str, ET.Element]:
    """(condition, type, <error/>) of an IqError."""
    err = e.iq.xml.find("{jabber:client}error")
    return e.condition, err.get("type"), err


@pytest.fixture
def user(server):
    return server.add_user()


def test_disco_finds_service_and_max_size(server, user):
    async def scenario():
        c = await uploader(server, user)
        try:
            info = await c.plugin["xep_0363"].find_upload_service(timeout=10)
            assert info is not None, "no upload service found through the host's disco#items"
            assert info["from"] == f"upload.{server.domain}"
            assert ("store", "file") in {(i[0], i[1]) for i in info["disco_info"]["identities"]}
            assert NS_UPLOAD in info["disco_info"]["features"]
            forms = [f["values"] for f in info["disco_info"].iterables if f["values"].get("FORM_TYPE") == [NS_UPLOAD]]
            assert forms, "no XEP-0128 form with FORM_TYPE urn:xmpp:http:upload:0"
            assert int(forms[0]["max-file-size"]) == 100 * 1024 * 1024
        finally:
            await c.close()

    run(scenario())


def test_upload_download_range_head(server, user):
    data = secrets.token_bytes(300_000)
    name = f"clip {secrets.token_hex(4)} ü.mp4"

    async def scenario():
        c = await uploader(server, user)
        try:
            put_url, hdrs, get_url = await slot(c, server, name, len(data), "video/mp4")
            assert put_url == get_url
            assert get_url.startswith(f"https://{server.domain}:{server.http_port}/upload/"), get_url
            assert urllib.parse.unquote(get_url.rsplit("/", 1)[1]) == name
            assert list(hdrs) == ["Authorization"] and hdrs["Authorization"].startswith("Bearer "), hdrs
            # A browser client on another origin may PUT (CORS preflight).
            status, h, _ = await ahttp("OPTIONS", put_url, headers={
                "Origin": "https://web.example", "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "authorization,content-type"})
            assert status in (200, 204) and h["access-control-allow-origin"] == "*", h
            assert "PUT" in h["access-control-allow-methods"] and "authorization" in h["access-control-allow-headers"].lower()
            # Nothing to download before the PUT.
            status, _, _ = await ahttp("GET", get_url)
            assert status == 404

            status, _, body = await put(put_url, hdrs, data, "video/mp4")
            assert status == 201, body

            status, h, body = await ahttp("GET", get_url)
            assert status == 200
            assert body == data
            assert h["content-type"] == "video/mp4"
            assert int(h["content-length"]) == len(data)
            assert h["accept-ranges"] == "bytes"
            assert h["x-content-type-options"] == "nosniff"

            status, h, body = await ahttp("HEAD", get_url)
            assert status == 200 and body == b""
            assert int(h["content-length"]) == len(data) and h["content-type"] == "video/mp4"

            status, h, body = await ahttp("GET", get_url, headers={"Range": "bytes=1000-1999"})
            assert status == 206
            assert body == data[1000:2000]
            assert h["content-range"] == f"bytes 1000-1999/{len(data)}"
            assert int(h["content-length"]) == 1000

            status, h, body = await ahttp("GET", get_url, headers={"Range": "bytes=-100"})
            assert status == 206 and body == data[-100:]

            status, h, body = await ahttp("GET", get_url, headers={"Range": f"bytes={len(data)}-"})
            assert status == 416
            assert h["content-range"] == f"bytes */{len(data)}"

            # One PUT per slot, even with the right token.
            status, _, _ = await put(put_url, hdrs, data, "video/mp4")
            assert status == 409
            status, _, body = await ahttp("GET", get_url)
            assert status == 200 and body == data

            # The token and the file name stay out of the logs.
            log = server.log_text()
            token = hdrs["Authorization"].split(" ", 1)[1]
            assert token not in log
            assert name not in log and urllib.parse.quote(name) not in log
        finally:
            await c.close()

    run(scenario())


def test_file_too_large(server_factory):
    srv = server_factory({"upload.max_file_bytes": 1000})
    user = srv.add_user()

    async def scenario():
        c = await uploader(srv, user)
        try:
            info = await c.plugin["xep_0363"].find_upload_service(timeout=10)
            form = next(f["values"] for f in info["disco_info"].iterables if f["values"].get("FORM_TYPE") == [NS_UPLOAD])
            assert form["max-file-size"] == "1000"
            await slot(c, srv, "ok.bin", 1000)
            with pytest.raises(IqError) as ei:
                await slot(c, srv, "big.bin", 1001)
            cond, etype, err = upload_error(ei.value)
            assert (cond, etype) == ("not-acceptable", "modify"), ei.value.iq
            assert err.findtext(f"{{{NS_UPLOAD}}}file-too-large/{{{NS_UPLOAD}}}max-file-size") == "1000"
        finally:
            await c.close()

    run(scenario())


def test_quota_counts_stored_and_pending(server_factory):
    srv = server_factory({"upload.max_file_bytes": 1000, "upload.quota_bytes": 2500})
    user, other = srv.add_user(), srv.add_user()

    async def scenario():
        c = await uploader(srv, user)
        d = await uploader(srv, other)
        try:
            url, hdrs, _ = await slot(c, srv, "one.bin", 1000)
            status, _, _ = await put(url, hdrs, b"x" * 1000)
            assert status == 201
            await slot(c, srv, "two.bin", 1000)  # pending, never used: still counts
            t0 = int(time.time())
            with pytest.raises(IqError) as ei:
                await slot(c, srv, "three.bin", 1000)
            cond, etype, err = upload_error(ei.value)
            assert (cond, etype) == ("resource-constraint", "wait"), ei.value.iq
            stamp = err.find(f"{{{NS_UPLOAD}}}retry").get("stamp")
            # The unused slot frees its bytes when its PUT deadline passes (slot_ttl_secs).
            when = time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
            assert t0 < when <= t0 + 300 + 5, stamp
            # What is left still fits; other users have quotas of their own.
            await slot(c, srv, "small.bin", 500)
            await slot(d, srv, "three.bin", 1000)
        finally:
            await close_all(c, d)

    run(scenario())


def test_bad_requests_and_guests(server, user):
    svc = f"upload.{server.domain}"

    async def scenario():
        c = await uploader(server, user)
        g = Client(server, server.guest_domain, "")
        g.register_plugin("xep_0363")
        await g.login()
        try:
            for attrs in ("filename='a.txt'", "filename='a.txt' size='-1'", "filename='a.txt' size='ten'",
                          "filename='' size='10'", "size='10'", "filename='a' size='1' content-type='nonsense'"):
                with pytest.raises(IqError) as ei:
                    await c.iq("get", f"<request xmlns='{NS_UPLOAD}' {attrs}/>", to=svc)
                assert ei.value.condition == "bad-request", (attrs, ei.value.iq)
            with pytest.raises(IqError) as ei:
                await c.iq("set", "<query xmlns='jabber:iq:version'/>", to=svc)
            assert ei.value.condition == "service-unavailable"
            with pytest.raises(IqError) as ei:
                await slot(g, server, "a.txt", 10)
            assert ei.value.condition == "forbidden", ei.value.iq
        finally:
            await close_all(c, g)

    run(scenario())


def test_guests_share_one_quota_when_given_one(server_factory):
    """upload.guest_quota_bytes: guests (meeting participants without an
    account) may upload, all of them together within it; each guest login
    is a new account, so a quota per guest would bound nothing."""
    srv = server_factory({"upload.max_file_bytes": 1000, "upload.guest_quota_bytes": 1500})

    async def scenario():
        g1 = Client(srv, srv.guest_domain, "")
        g2 = Client(srv, srv.guest_domain, "")
        for g in (g1, g2):
            g.register_plugin("xep_0363")
            await g.login()
        try:
            url, hdrs, _ = await slot(g1, srv, "agenda.txt", 1000, "text/plain")
            status, _, _ = await put(url, hdrs, b"a" * 1000, "text/plain")
            assert status == 201
            # Another guest shares what is left, not a quota of its own.
            with pytest.raises(IqError) as ei:
                await slot(g2, srv, "more.txt", 1000)
            assert ei.value.condition in ("resource-constraint", "not-allowed"), ei.value.iq
            await slot(g2, srv, "small.txt", 500)
        finally:
            await close_all(g1, g2)

    run(scenario())


def test_wrong_token_or_size_stores_nothing(server_factory):
    srv = server_factory()
    user = srv.add_user()
    data = secrets.token_bytes(5000)

    async def scenario():
        c = await uploader(srv, user)
        try:
            url, hdrs, _ = await slot(c, srv, "secret.txt", len(data), "text/plain")
            bad = {"Authorization": "Bearer " + secrets.token_urlsafe(32)}
            for h in ({}, bad, {"Authorization": hdrs["Authorization"].replace("Bearer", "Basic")}):
                status, _, _ = await put(url, h, data, "text/plain")
                assert status == 403, h
            status, _, _ = await put(url, hdrs, data + b"!", "text/plain")
            assert status == 413
            status, _, _ = await put(url, hdrs, data[:-1], "text/plain")
            assert status == 400
            status, _, _ = await put(url, hdrs, data, "text/html")
            assert status == 415
            assert (await ahttp("GET", url))[0] == 404
            assert stored_files(srv) == []
            # None of that used up the slot.
            status, _, _ = await put(url, hdrs, data, "text/plain")
            assert status == 201
            status, h, body = await ahttp("GET", url)
            assert status == 200 and body == data and h["content-type"] == "text/plain"
            assert len(stored_files(srv)) == 1
        finally:
            await c.close()

    run(scenario())


def test_interrupted_put_leaves_nothing(server_factory):
    """A PUT cut off half way is not served, leaves no partial file, and the slot can be used again."""
    srv = server_factory({"log.level": "trace"})
    user = srv.add_user()
    data = secrets.token_bytes(200_000)

    async def scenario():
        c = await uploader(srv, user)
        try:
            url, hdrs, _ = await slot(c, srv, "half.bin", len(data))

            def half_put():
                u = urllib.parse.urlsplit(url)
                conn = http.client.HTTPSConnection(u.hostname, u.port, context=insecure_ssl_context(), timeout=15)
                conn.putrequest("PUT", u.path)
                conn.putheader("Content-Length", str(len(data)))
                conn.putheader("Authorization", hdrs["Authorization"])
                conn.endheaders()
                conn.send(data[: len(data) // 2])
                time.sleep(0.3)
                conn.close()

            await asyncio.to_thread(half_put)
            status = None
            for _ in range(50):  # the server notices the closed connection, then gives the slot back
                status, _, _ = await put(url, hdrs, data)
                if status != 409:
                    break
                await asyncio.sleep(0.1)
            assert status == 201
            status, _, body = await ahttp("GET", url)
            assert status == 200 and body == data
            assert stored_files(srv) == [url.split("/")[-2]]
            token = hdrs["Authorization"].split(" ", 1)[1]
            assert token not in srv.log_text(), "the PUT token is in the trace-level log"
        finally:
            await c.close()

    run(scenario())


def test_expiry_deletes_files(server_factory):
    srv = server_factory({"upload.max_file_bytes": 1000, "upload.quota_bytes": 1000, "retention.days": 7})
    user = srv.add_user()

    async def scenario(step):
        c = await uploader(srv, user)
        try:
            return await step(c)
        finally:
            await c.close()

    async def upload(c):
        url, hdrs, _ = await slot(c, srv, "old.txt", 1000, "text/plain")
        assert (await put(url, hdrs, b"a" * 1000, "text/plain"))[0] == 201
        return url

    url = run(scenario(upload))
    now = int(time.time())
    r = srv.cli("upload", "expire", "--now", str(now + 60))
    assert r.returncode == 0, r.stderr
    assert request("GET", url)[0] == 200, "deleted before its time"
    r = srv.cli("upload", "expire", "--now", str(now + WEEK + 60))
    assert r.returncode == 0, r.stderr
    assert "deleted 1" in r.stdout, r.stdout
    assert request("GET", url)[0] == 404
    assert stored_files(srv) == []

    async def quota_freed(c):
        await slot(c, srv, "new.txt", 1000)

    run(scenario(quota_freed))


def test_upload_disabled(server_factory):
    srv = server_factory({"upload.enabled": False})
    user = srv.add_user()

    async def scenario():
        c = await uploader(srv, user)
        try:
            assert await c.plugin["xep_0363"].find_upload_service(timeout=10) is None
        finally:
            await c.close()

    run(scenario())
