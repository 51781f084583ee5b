"""RFC 6121 roster and presence subscription between two users."""

import asyncio

from clients import close_all, login, run


async def roster_items(c):
    iq = await c.iq("get", "<query xmlns='jabber:iq:roster'/>")
    items = {}
    for item in iq.xml.iter("{jabber:iq:roster}item"):
        items[item.get("jid")] = item
    return items


async def wait_subscription(c, jid, expected, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        items = await roster_items(c)
        sub = items[jid].get("subscription") if jid in items else None
        if sub == expected:
            return items[jid]
        if loop.time() > deadline:
            raise AssertionError(f"{c.boundjid.bare}: roster item {jid} has subscription {sub!r}, want {expected!r}")
        await asyncio.sleep(0.2)


def is_available_from(bare):
    return lambda p: p["from"].bare == bare and p["type"] in ("available", "") and p["type"] != "unavailable"


def test_mutual_subscription(server):
    alice_jid, alice_pw = server.add_user()
    bob_jid, bob_pw = server.add_user()

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        bob = await login(server, bob_jid, bob_pw)
        try:
            # alice adds bob to her roster
            await alice.iq(
                "set",
                f"<query xmlns='jabber:iq:roster'><item jid='{bob_jid}' name='Bob'><group>Friends</group></item></query>",
            )
            items = await roster_items(alice)
            assert bob_jid in items and items[bob_jid].get("name") == "Bob"
            assert items[bob_jid].get("subscription") == "none"

            # alice subscribes; bob sees the request with a bare from
            alice.send_presence(pto=bob_jid, ptype="subscribe")
            req = await bob.wait_presence(lambda p: p["type"] == "subscribe")
            assert req["from"].bare == alice_jid
            # bob approves and subscribes back
            bob.send_presence(pto=alice_jid, ptype="subscribed")
            bob.send_presence(pto=alice_jid, ptype="subscribe")
            req2 = await alice.wait_presence(lambda p: p["type"] == "subscribe")
            assert req2["from"].bare == bob_jid
            alice.send_presence(pto=bob_jid, ptype="subscribed")

            await wait_subscription(alice, bob_jid, "both")
            await wait_subscription(bob, alice_jid, "both")

            # each sees the other's available presence
            await alice.wait_presence(is_available_from(bob_jid))
            await bob.wait_presence(is_available_from(alice_jid))

            # presence updates now flow: bob goes away, alice sees it
            bob.send_presence(pshow="away", pstatus="lunch")
            p = await alice.wait_presence(lambda p: p["from"].bare == bob_jid and p["show"] == "away")
            assert p["status"] == "lunch"
            # bob logs off: alice gets unavailable
            await bob.close()
            await alice.wait_presence(lambda p: p["from"].bare == bob_jid and p["type"] == "unavailable")
        finally:
            await close_all(alice, bob)

    run(scenario())


def test_roster_persists_and_remove(server):
    alice_jid, alice_pw = server.add_user()
    carol_jid = f"carol-{alice_jid}"  # contact need not exist

    async def scenario():
        alice = await login(server, alice_jid, alice_pw)
        try:
            await alice.iq("set", f"<query xmlns='jabber:iq:roster'><item jid='{carol_jid}'/></query>")
        finally:
            await alice.close()
        alice = await login(server, alice_jid, alice_pw)
        try:
            items = await roster_items(alice)
            assert carol_jid in items, list(items)
            await alice.iq(
                "set", f"<query xmlns='jabber:iq:roster'><item jid='{carol_jid}' subscription='remove'/></query>"
            )
            items = await roster_items(alice)
            assert carol_jid not in items
        finally:
            await alice.close()

    run(scenario())
