"""XEP-0398: an avatar published with XEP-0084 shows in vcard-temp, a
vcard-temp PHOTO is published to the XEP-0084 nodes, and available
presence carries the avatar's hash (XEP-0153)."""

import base64
import hashlib
import os
import xml.etree.ElementTree as ET

import pytest

from clients import befriend, close_all, login, run
from harness import unique

NS_VCARD = "vcard-temp"
NS_DATA = "urn:xmpp:avatar:data"
NS_META = "urn:xmpp:avatar:metadata"
NS_UPDATE = "vcard-temp:x:update"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"

pytestmark = pytest.mark.conclave_only


async def vcard_photo(c, jid):
    """(TYPE, bytes) of jid's vCard PHOTO, or None."""
    res = await c.iq("get", f"<vCard xmlns='{NS_VCARD}'/>", to=jid)
    photo = res.xml.find(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}PHOTO")
    if photo is None:
        return None
    return photo.findtext(f"{{{NS_VCARD}}}TYPE"), base64.b64decode(photo.findtext(f"{{{NS_VCARD}}}BINVAL"))


async def last_item(c, jid, node):
    res = await c.iq("get", f"<pubsub xmlns='{NS_PUBSUB}'><items node='{node}' max_items='1'/></pubsub>", to=jid)
    items = list(res.xml.iter(f"{{{NS_PUBSUB}}}item"))
    assert items, f"no item in {node}"
    return items[-1]


def image(n=3000):
    return b"\x89PNG\r\n\x1a\n" + os.urandom(n)


def test_pep_avatar_shows_in_vcard_for_those_who_may_see_it(server):
    async def scenario():
        alice = await login(server, *server.add_user())
        bob = await login(server, *server.add_user())
        carol = await login(server, *server.add_user())
        alice.register_plugin("xep_0084")
        try:
            await befriend(alice, bob)
            info = await alice.plugin["xep_0030"].get_info(jid=alice.boundjid.bare, timeout=10)
            assert "urn:xmpp:pep-vcard-conversion:0" in info["disco_info"]["features"]
            png = image()
            sha1 = hashlib.sha1(png).hexdigest()
            await alice.plugin["xep_0084"].publish_avatar(png, timeout=10)
            await alice.plugin["xep_0084"].publish_avatar_metadata(
                items=[{"id": sha1, "type": "image/png", "bytes": len(png)}], timeout=10
            )
            # a contact (the nodes' default access model is presence) gets
            # the same bytes through vcard-temp; a stranger gets no PHOTO
            assert await vcard_photo(bob, alice.boundjid.bare) == ("image/png", png)
            assert await vcard_photo(carol, alice.boundjid.bare) is None
            assert await vcard_photo(alice, alice.boundjid.bare) == ("image/png", png)
            # and her presence now carries the hash
            bob.presences.clear()
            alice.send_presence(pstatus="new face")
            p = await bob.wait_presence(lambda p: p["status"] == "new face")
            assert p.xml.findtext(f"{{{NS_UPDATE}}}x/{{{NS_UPDATE}}}photo") == sha1
            # "no avatar" from the client (an empty <photo/>) is left alone
            pres = alice.make_presence(pstatus="hidden face")
            x = ET.SubElement(pres.xml, f"{{{NS_UPDATE}}}x")
            ET.SubElement(x, f"{{{NS_UPDATE}}}photo")
            pres.send()
            p = await bob.wait_presence(lambda p: p["status"] == "hidden face")
            assert [x.text for x in p.xml.iter(f"{{{NS_UPDATE}}}photo")] == [None]
            # a room join carries the hash too (§4: directed presence)
            room = f"{unique('room')}@conference.{server.domain}"
            for c in (alice, bob):
                c.register_plugin("xep_0045")
            # (slixmpp's MUC plugin has its own presence event for rooms)
            bob.add_event_handler("groupchat_presence", bob._on_presence)
            await bob.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=10)
            await alice.plugin["xep_0045"].join_muc_wait(room, "alice", timeout=10)
            p = await bob.wait_presence(lambda p: p["from"] == f"{room}/alice")
            assert p.xml.findtext(f"{{{NS_UPDATE}}}x/{{{NS_UPDATE}}}photo") == sha1
            # metadata naming an image the data node does not hold: no PHOTO
            other = image()
            await alice.iq(
                "set",
                f"<pubsub xmlns='{NS_PUBSUB}'><publish node='{NS_DATA}'><item id='{'1' * 40}'>"
                f"<data xmlns='{NS_DATA}'>{base64.b64encode(other).decode()}</data></item></publish></pubsub>",
            )
            await alice.plugin["xep_0084"].publish_avatar_metadata(
                items=[{"id": "1" * 40, "type": "image/png", "bytes": len(other)}], timeout=10
            )
            assert await vcard_photo(bob, alice.boundjid.bare) is None
            # turning the avatar off takes the PHOTO away
            await alice.plugin["xep_0084"].stop(timeout=10)
            assert await vcard_photo(bob, alice.boundjid.bare) is None
        finally:
            await close_all(alice, bob, carol)

    run(scenario())


def test_vcard_photo_is_published_to_pep_and_in_presence(server):
    async def scenario():
        alice = await login(server, *server.add_user())
        bob = await login(server, *server.add_user())
        carol = await login(server, *server.add_user())
        try:
            await befriend(alice, bob)
            jpeg = b"\xff\xd8\xff\xe0" + os.urandom(5000)
            sha1 = hashlib.sha1(jpeg).hexdigest()
            b64 = base64.b64encode(jpeg).decode()
            # a legacy client: vCard with PHOTO (BINVAL wrapped, as some send it)
            wrapped = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
            await alice.iq(
                "set",
                f"<vCard xmlns='{NS_VCARD}'><FN>Alice</FN><PHOTO><TYPE>image/jpeg</TYPE><BINVAL>{wrapped}</BINVAL></PHOTO></vCard>",
            )
            # the PEP nodes hold it, with the SHA-1 id, readable by anyone
            # (they are new, and the vCard is public)
            for reader in (bob, carol):
                meta = await last_item(reader, alice.boundjid.bare, NS_META)
                assert meta.get("id") == sha1
                info = meta.find(f"{{{NS_META}}}metadata/{{{NS_META}}}info")
                assert (info.get("id"), info.get("type"), info.get("bytes")) == (sha1, "image/jpeg", str(len(jpeg)))
                data = await last_item(reader, alice.boundjid.bare, NS_DATA)
                assert data.get("id") == sha1
                assert base64.b64decode(data.findtext(f"{{{NS_DATA}}}data")) == jpeg
            # the vCard keeps its other fields
            res = await carol.iq("get", f"<vCard xmlns='{NS_VCARD}'/>", to=alice.boundjid.bare)
            assert res.xml.findtext(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN") == "Alice"
            # presence: the server's hash replaces what the client claimed
            bob.presences.clear()
            alice.send_presence(pstatus="legacy", ptype=None)
            p = await bob.wait_presence(lambda p: p["status"] == "legacy")
            assert p.xml.findtext(f"{{{NS_UPDATE}}}x/{{{NS_UPDATE}}}photo") == sha1
            pres = alice.make_presence(pstatus="claimed")
            x = ET.SubElement(pres.xml, f"{{{NS_UPDATE}}}x")
            ET.SubElement(x, f"{{{NS_UPDATE}}}photo").text = "0" * 40
            pres.send()
            p = await bob.wait_presence(lambda p: p["status"] == "claimed")
            assert [x.text for x in p.xml.iter(f"{{{NS_UPDATE}}}photo")] == [sha1]
            # undecodable PHOTO: bad-request, nothing changes
            from slixmpp.exceptions import IqError

            with pytest.raises(IqError) as e:
                await alice.iq("set", f"<vCard xmlns='{NS_VCARD}'><PHOTO><BINVAL>!!not base64!!</BINVAL></PHOTO></vCard>")
            assert e.value.condition == "bad-request"
            assert (await last_item(bob, alice.boundjid.bare, NS_META)).get("id") == sha1
        finally:
            await close_all(alice, bob, carol)

    run(scenario())
