"""XEP-0357 push notifications to an app server that is an external
component (slixmpp ComponentXMPP), as deployments run them."""

import asyncio

import pytest
import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import harness
from clients import close_all, login, run

pytestmark = pytest.mark.conclave_only

APP = "push.localhost"
SECRET = "push-component-secret-0123"
NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"


class AppServer(slixmpp.ComponentXMPP):
    def __init__(self, srv):
        super().__init__(APP, SECRET, srv.host, srv.component_port)
        self.pushes = []
        self.register_handler(
            Callback("push", MatchXPath(f"{{jabber:component:accept}}iq/{{{NS_PUBSUB}}}pubsub"), self.on_push)
        )

    def on_push(self, iq):
        self.pushes.append(iq)
        iq.reply().send()


@pytest.fixture(scope="module")
def psrv():
    srv = harness.make_server(None, "push-server", {APP: SECRET})
    srv.start()
    yield srv
    srv.cleanup()


async def until(pred, timeout=5.0):
    for _ in range(int(timeout / 0.05)):
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


def test_offline_message_notifies_the_app_server_without_the_body(psrv):
    alice_jid, alice_pw = psrv.add_user()
    bob_jid, bob_pw = psrv.add_user()

    async def scenario():
        app = AppServer(psrv)
        started = asyncio.get_running_loop().create_future()
        app.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
        app.connect()
        await asyncio.wait_for(started, 10)
        alice = await login(psrv, alice_jid, alice_pw)
        bob = await login(psrv, bob_jid, bob_pw)
        try:
            await alice.iq(
                "set",
                f"<enable xmlns='{NS_PUSH}' jid='{APP}' node='device-1'><x xmlns='jabber:x:data' type='submit'>"
                "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
                "<field var='secret'><value>s3cr3t-token</value></field></x></enable>",
            )
            await alice.close()
            bob.send_message(mto=alice_jid, mbody="private words", mtype="chat")
            assert await until(lambda: app.pushes), "no push reached the app server"
            iq = app.pushes[0]
            assert iq["from"] == alice_jid
            publish = iq.xml.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish")
            assert publish.get("node") == "device-1"
            fields = {
                f.get("var"): [v.text for v in f.findall("{jabber:x:data}value")]
                for f in publish.iter("{jabber:x:data}field")
            }
            assert fields["message-count"] == ["1"]
            assert fields["last-message-sender"] == [bob_jid]
            assert "private words" not in str(iq), "the body left the server"
            secret = [
                v.text
                for f in iq.xml.iter("{jabber:x:data}field")
                if f.get("var") == "secret"
                for v in f.findall("{jabber:x:data}value")
            ]
            assert secret == ["s3cr3t-token"], "publish-options not passed on"
            # after disable, nothing more
            alice2 = await login(psrv, alice_jid, alice_pw)
            await alice2.iq("set", f"<disable xmlns='{NS_PUSH}' jid='{APP}'/>")
            await alice2.close()
            bob.send_message(mto=alice_jid, mbody="again", mtype="chat")
            await bob.ping_server()
            await asyncio.sleep(0.5)
            assert len(app.pushes) == 1
        finally:
            await close_all(bob)
            app.disconnect()

    run(scenario())
