"""Hostile input, from anyone who can reach the port: a stanza nested
10,000 deep used to overflow a worker's stack and abort the whole server.
Now it is refused with policy-violation while it is being parsed, before
and after authentication (as a registered user and as a guest), and a
bystander session logged in throughout is not disturbed.

WebSocket and BOSH get the same stanza in tests/node/hostile.test.mjs."""

import base64
import time

import pytest

from clients import close_all, login, run
from harness import RawStream

pytestmark = pytest.mark.conclave_only

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
DEPTH = 10_000


def deep_message(to: str, depth: int = DEPTH, body: str = "") -> bytes:
    body = f"<body>{body}</body>" if body else ""
    return (f"<message to='{to}' type='chat'>{body}" + "<a>" * depth + "</a>" * depth + "</message>").encode()


def refused_quickly(r: RawStream, payload: bytes) -> str | None:
    t0 = time.monotonic()
    r.try_send(payload)
    cond = r.stream_error(timeout=5)
    assert time.monotonic() - t0 < 2.0, "the refusal took too long"
    return cond


def bystander_still_served(server, bystander, bystander_jid):
    """Another session sends the bystander a message; it arrives."""

    async def check():
        jid, pw = server.add_user()
        sender = await login(server, jid, pw)
        try:
            sender.send_message(mto=bystander_jid, mbody="still here?", mtype="chat")
            m = await bystander.next_message(pred=lambda m: m["body"] == "still here?")
            assert m["from"].bare == jid
        finally:
            await close_all(sender)

    return check()


@pytest.mark.parametrize("who", ["before-auth", "user", "guest"])
def test_a_deeply_nested_stanza_is_refused_and_the_server_goes_on(server, who):
    by_jid, by_pw = server.add_user()
    jid, pw = server.add_user()

    async def scenario():
        bystander = await login(server, by_jid, by_pw)
        try:
            with RawStream(server, timeout=5) as r:
                if who == "before-auth":
                    r.tls_open()
                elif who == "user":
                    r.login(jid.split("@")[0], pw)
                else:
                    r.open(to=server.guest_domain)
                    r.starttls()
                    r.open(to=server.guest_domain)
                    r.send(f"<auth xmlns='{NS_SASL}' mechanism='ANONYMOUS'>{base64.b64encode(b'x').decode()}</auth>")
                    assert r.wait_for(lambda e: e.tag.endswith("success") or e.tag.endswith("failure")).tag.endswith("success")
                    r.open(to=server.guest_domain)
                    r.bind()
                assert refused_quickly(r, deep_message(f"x@{server.domain}")) == "policy-violation", r.describe()
                r.wait_closed(timeout=3)
            assert server.running(), "the server process died"
            await bystander_still_served(server, bystander, by_jid)
            # at the limit (64 levels, the stanza included) it is a message
            with RawStream(server, timeout=5) as r:
                r.login(jid.split("@")[0], pw, resource="limit")
                r.send(deep_message(by_jid, 63, body="deep but allowed"))
                await bystander.next_message(pred=lambda m: m["body"] == "deep but allowed")
        finally:
            await close_all(bystander)

    run(scenario())
