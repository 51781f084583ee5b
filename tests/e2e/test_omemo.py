"""OMEMO (XEP-0384) end to end with slixmpp-omemo: two users with two devices
each publish their device lists and bundles over PEP (publish-options,
open access, +notify), exchange encrypted messages live and through the
offline store, and the server's database and log never see the plaintext."""

import asyncio
import secrets
from typing import FrozenSet, Optional

import pytest
from omemo.session_manager import MessageNotForUs
from omemo.storage import Just, Maybe, Nothing, Storage
from omemo.types import DeviceInformation, JSONType
from slixmpp import JID
from slixmpp.plugins import register_plugin
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher import MatchXPath
from slixmpp_omemo import TrustLevel, XEP_0384

from clients import befriend, close_all, pep_login, run

pytestmark = [
    pytest.mark.conclave_only,
    # slixmpp-omemo 2.2 reaches plugins the way slixmpp 1.17 deprecates.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:slixmpp_omemo"),
]

NS_DELAY = "urn:xmpp:delay"


class MemoryStorage(Storage):
    """A device's OMEMO state, kept across its reconnections."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, JSONType] = {}

    async def _load(self, key: str) -> Maybe[JSONType]:
        return Just(self.data[key]) if key in self.data else Nothing()

    async def _store(self, key: str, value: JSONType) -> None:
        self.data[key] = value

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


class BlindTrustOmemo(XEP_0384):
    """slixmpp-omemo with blind trust before verification (what clients do)."""

    default_config = {"fallback_message": "This message is OMEMO encrypted.", "device_storage": None}

    @property
    def storage(self) -> Storage:
        return self.device_storage

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _devices_blindly_trusted(self, blindly_trusted: FrozenSet[DeviceInformation], identifier: Optional[str]) -> None:
        pass

    async def _prompt_manual_trust(self, manually_trusted: FrozenSet[DeviceInformation], identifier: Optional[str]) -> None:
        sm = await self.get_session_manager()
        for d in manually_trusted:
            await sm.set_trust(d.bare_jid, d.identity_key, TrustLevel.TRUSTED.value)


register_plugin(BlindTrustOmemo)


async def device(server, jid, pw, storage):
    """A client with OMEMO, its device list and bundles published. Its
    message handler is in place before its initial presence, which brings
    the offline messages."""
    ready = asyncio.get_running_loop().create_future()

    def setup(c):
        c.add_event_handler("omemo_initialized", lambda *_: ready.done() or ready.set_result(True))
        c.plaintexts = asyncio.Queue()
        c.received = []

        async def on_message(msg):
            xep = c.plugin["xep_0384"]
            if msg["type"] not in ("chat", "normal") or not xep.is_encrypted(msg):
                return
            try:
                plain, _ = await xep.decrypt_message(msg)
            except MessageNotForUs:
                # Empty session-completing messages go to the bare JID, so
                # the account's other devices see them too.
                return
            except Exception as e:  # reported through the queue, so the test shows it
                await c.plaintexts.put(e)
                return
            # The library also sends empty messages to complete new sessions.
            if plain["body"]:
                c.received.append(msg)
                await c.plaintexts.put(plain["body"])

        c.register_handler(CoroutineCallback("omemo-messages", MatchXPath("{jabber:client}message"), on_message))

    c = await pep_login(server, jid, pw, setup=setup, plugins=[("xep_0384", {"device_storage": storage})])
    await asyncio.wait_for(ready, 30)
    await c.ping_server()
    return c


async def send_encrypted(sender, to, body):
    msg = sender.make_message(mto=to, mtype="chat")
    msg["body"] = body
    enc, errors = await sender.plugin["xep_0384"].encrypt_message(msg, {JID(to)})
    assert enc is not None, errors
    enc.send()
    return enc


async def next_plain(c, timeout=20):
    got = await asyncio.wait_for(c.plaintexts.get(), timeout)
    if isinstance(got, Exception):
        raise got
    return got


def test_omemo_between_two_users_with_two_devices_each(server):
    (alice, apw), (bob, bpw) = server.add_user(), server.add_user()
    marker = f"PLAINTEXT-MARKER-{secrets.token_hex(8)}"
    control = f"CONTROL-MARKER-{secrets.token_hex(8)}"
    stores = {k: MemoryStorage() for k in ("a1", "a2", "b1", "b2")}

    async def scenario():
        a1 = b1 = a2 = b2 = None
        try:
            a1 = await device(server, alice + "/a1", apw, stores["a1"])
            b1 = await device(server, bob + "/b1", bpw, stores["b1"])
            await befriend(a1, b1)
            a2 = await device(server, alice + "/a2", apw, stores["a2"])
            b2 = await device(server, bob + "/b2", bpw, stores["b2"])
            # Every device learns every device list over PEP (notifications
            # and the last item on presence); they are downloaded as needed.
            for c in (a1, a2, b1, b2):
                await c.plugin["xep_0384"].refresh_device_lists({JID(alice), JID(bob)})
            # Live: alice/a1 writes to bob; both his devices decrypt.
            await send_encrypted(a1, bob, f"{marker} live")
            assert await next_plain(b1) == f"{marker} live"
            assert await next_plain(b2) == f"{marker} live"
            # bob/b2 answers; both of alice's devices decrypt.
            await send_encrypted(b2, alice, f"{marker} reply")
            assert await next_plain(a1) == f"{marker} reply"
            assert await next_plain(a2) == f"{marker} reply"
            # Offline: bob's devices leave; alice writes; b1 comes back and
            # decrypts what the server kept for him.
            await close_all(b1, b2)
            b1 = b2 = None
            await send_encrypted(a2, bob, f"{marker} while you were away")
            a2.send_message(mto=bob, mbody=f"{control} in clear", mtype="chat")
            await a2.ping_server()
            b1 = await device(server, bob + "/b1", bpw, stores["b1"])
            assert await next_plain(b1) == f"{marker} while you were away"
            delayed = b1.received[-1]
            assert delayed.xml.find(f"{{{NS_DELAY}}}delay") is not None, "not delivered from the offline store"
        finally:
            await close_all(*(c for c in (a1, a2, b1, b2) if c is not None))

    run(scenario(), timeout=150)

    # The server never held the plaintext: not in the database (main file,
    # WAL, shared memory) nor in its log. The control message, sent in the
    # clear through the same offline store, shows the check can see it.
    all_bytes = b"".join(p.read_bytes() for p in server.data_dir.rglob("*") if p.is_file())
    assert control.encode() in all_bytes, "control message not found: the check would prove nothing"
    assert marker.encode() not in all_bytes, "the plaintext reached the server's store"
    assert marker not in server.log_text(), "the plaintext reached the server's log"
