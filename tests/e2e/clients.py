"""slixmpp (asyncio) client helpers. Every await here has a timeout."""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout  # noqa: F401  (re-exported for tests)

from harness import ServerBase, insecure_ssl_context

log = logging.getLogger("e2e.clients")

T = 10.0  # default timeout for a single protocol step (seconds)


def run(coro, timeout: float = 60.0):
    """Run one async scenario with an overall timeout."""

    async def wrapper():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(wrapper())


class LoginFailed(Exception):
    def __init__(self, kind: str, condition: str | None = None, detail: str = ""):
        super().__init__(f"{kind}: {condition} {detail}".strip())
        self.kind = kind  # 'failed_auth' | 'stream_error' | 'disconnected' | 'no_auth'
        self.condition = condition


class Client(slixmpp.ClientXMPP):
    """A slixmpp client pointed at the server under test on loopback."""

    def __init__(
        self,
        server: ServerBase,
        jid: str,
        password: str = "",
        *,
        tls: str = "starttls",  # 'starttls' | 'direct' | 'stock'
        mech: str | None = None,
        register: bool = False,
    ):
        super().__init__(jid, password, sasl_mech=mech)
        self.target = server
        self.tls_mode = tls
        if tls != "stock":
            self.ssl_context = insecure_ssl_context()
            self.enable_plaintext = False
            self.enable_starttls = tls == "starttls"
            self.enable_direct_tls = tls == "direct"
            self.whitespace_keepalive = False
        # 'stock': slixmpp exactly as shipped, as a new user runs it: its own
        # TLS context (certificates verified against the system's trust
        # store, which the caller points at the server's certificate with
        # SSL_CERT_FILE) and its own order of attempts (direct TLS on the
        # given port first, then STARTTLS).
        # Subscription handling is done explicitly by the tests.
        self.auto_authorize = None
        self.auto_subscribe = False
        for p in ("xep_0030", "xep_0092", "xep_0199", "xep_0202", "xep_0203", "xep_0054"):
            self.register_plugin(p)
        self.messages: asyncio.Queue = asyncio.Queue()
        self.stream_errors: list[str] = []
        self.auth_failures: list[str] = []
        self.presences: list = []
        self._presence_event = asyncio.Event()
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("message_error", self._on_message)
        self.add_event_handler("stream_error", self._on_stream_error)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("presence", self._on_presence)
        if register:
            self.register_plugin("xep_0077")
            self.plugin["xep_0077"].force_registration = True
            self.registered: asyncio.Future = asyncio.get_event_loop().create_future()
            self.add_event_handler("register", self._on_register)

    # --- event handlers ------------------------------------------------------
    def _on_message(self, msg):
        self.messages.put_nowait(msg)

    def _on_stream_error(self, err):
        self.stream_errors.append(err["condition"])

    def _on_failed_auth(self, failure):
        self.auth_failures.append(failure["condition"])

    def _on_presence(self, pres):
        self.presences.append(pres)
        self._presence_event.set()

    async def _on_register(self, form):
        resp = self.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = self.boundjid.user
        resp["register"]["password"] = self.password
        try:
            await resp.send(timeout=T)
        except (IqError, IqTimeout) as e:
            if not self.registered.done():
                self.registered.set_exception(e)
            self.disconnect(wait=0)
            return
        if not self.registered.done():
            self.registered.set_result(True)

    # --- connection ------------------------------------------------------------
    def port(self) -> int:
        return self.target.direct_tls_port if self.tls_mode == "direct" else self.target.starttls_port

    async def login(self, timeout: float = T, presence: bool = True) -> "Client":
        """Connect and wait for session start; raise LoginFailed otherwise."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def finish(kind, cond=None, detail=""):
            if not done.done():
                done.set_result((kind, cond, detail))

        handlers = {
            "session_start": lambda _: finish("ok"),
            "failed_auth": lambda f: finish("failed_auth", f["condition"], f["text"]),
            "no_auth": lambda _: finish("no_auth"),
            "stream_error": lambda e: finish("stream_error", e["condition"], e["text"]),
            "disconnected": lambda reason: finish("disconnected", None, str(reason)),
            "connection_failed": lambda e: finish("connection_failed", None, str(e)),
        }
        if self.tls_mode == "stock":
            # Stock slixmpp tries direct TLS first; its failure is an event
            # on the way to the STARTTLS attempt, not the end of the login.
            del handlers["connection_failed"]
        for ev, h in handlers.items():
            self.add_event_handler(ev, h)
        try:
            self.connect(self.target.host, self.port())
            try:
                kind, cond, detail = await asyncio.wait_for(done, timeout)
            except asyncio.TimeoutError:
                self.abort_now()
                raise LoginFailed("timeout", None, f"no session within {timeout}s")
        finally:
            for ev, h in handlers.items():
                self.del_event_handler(ev, h)
        if kind != "ok":
            self.abort_now()
            raise LoginFailed(kind, cond, detail)
        if presence:
            self.send_presence()
        return self

    def abort_now(self):
        self.cancel_connection_attempt()
        self.abort()

    async def close(self, timeout: float = 3.0):
        self.cancel_connection_attempt()
        if self.transport is None:
            return
        try:
            await asyncio.wait_for(self.disconnect(wait=timeout), timeout + 1)
        except (asyncio.TimeoutError, Exception):
            self.abort()

    async def wait_disconnected(self, timeout: float = T):
        if self.transport is None:
            return
        await asyncio.wait_for(self.disconnected, timeout)

    # --- helpers ---------------------------------------------------------------
    async def next_message(self, timeout: float = T, pred=None):
        """Next received <message/> with a body (and matching pred)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise asyncio.TimeoutError("no message received")
            msg = await asyncio.wait_for(self.messages.get(), left)
            if not msg["body"]:
                continue
            if pred is None or pred(msg):
                return msg

    async def wait_presence(self, pred, timeout: float = T):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for p in self.presences:
                if pred(p):
                    return p
            left = deadline - loop.time()
            if left <= 0:
                raise asyncio.TimeoutError("presence not received")
            self._presence_event.clear()
            try:
                await asyncio.wait_for(self._presence_event.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def iq(self, type_: str, payload: str | ET.Element | None, to: str | None = None, timeout: float = T):
        """Send an IQ with a raw XML payload; returns the result Iq (raises IqError)."""
        iq = self.Iq()
        iq["type"] = type_
        if to:
            iq["to"] = to
        if payload is not None:
            if isinstance(payload, str):
                payload = ET.fromstring(payload)
            iq.append(payload)
        return await iq.send(timeout=timeout)

    async def ping_server(self, timeout: float = T):
        return await self.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=self.boundjid.domain, timeout=timeout)


async def login(server: ServerBase, jid: str, password: str = "", **kw) -> Client:
    """Create a client and log it in (sends initial presence)."""
    presence = kw.pop("presence", True)
    timeout = kw.pop("timeout", T)
    c = Client(server, jid, password, **kw)
    await c.login(timeout=timeout, presence=presence)
    return c


async def can_login(server: ServerBase, jid: str, password: str) -> bool:
    """Whether a fresh login with these credentials succeeds."""
    try:
        c = await login(server, jid, password)
    except LoginFailed:
        return False
    await close_all(c)
    return True


async def close_all(*clients: Client):
    await asyncio.gather(*(c.close() for c in clients if c is not None), return_exceptions=True)


async def befriend(a: Client, b: Client, timeout: float = T):
    """Mutual presence subscription ('both') between two available clients."""
    a_bare, b_bare = a.boundjid.bare, b.boundjid.bare
    # Subscription presences go to "interested" resources: those that asked
    # for the roster (RFC 6121 §3.1.6).
    await a.get_roster(timeout=timeout)
    await b.get_roster(timeout=timeout)
    a.send_presence(pto=b_bare, ptype="subscribe")
    await b.wait_presence(lambda p: p["type"] == "subscribe" and p["from"].bare == a_bare, timeout)
    b.send_presence(pto=a_bare, ptype="subscribed")
    b.send_presence(pto=a_bare, ptype="subscribe")
    await a.wait_presence(lambda p: p["type"] == "subscribe" and p["from"].bare == b_bare, timeout)
    a.send_presence(pto=b_bare, ptype="subscribed")
    await b.wait_presence(lambda p: p["type"] == "subscribed" and p["from"].bare == a_bare, timeout)
    # Both have handled everything above once each answers a ping.
    await a.ping_server(timeout=timeout)
    await b.ping_server(timeout=timeout)


NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
PEP_PLUGINS = ("xep_0004", "xep_0060", "xep_0115", "xep_0163")


async def pep_login(
    server: ServerBase,
    jid: str,
    password: str,
    interests=(),
    plugins=(),
    setup=None,
    timeout: float = T,
    **kw,
) -> Client:
    """Log in a client that uses PEP and wants notifications of `interests`
    (XEP-0163 +notify in its XEP-0115 caps), once the server knows its caps.

    slixmpp keys its disco features and caps by the JID they were set for, so
    interests and caps are set after binding, before the initial presence.
    `plugins` (names, or (name, config) pairs) are registered after login too
    (their PEP interests then stick), after `setup(client)` if given: the
    place for handlers that must see what the initial presence brings.
    Every pubsub event message received is kept in `client.events`.
    """
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath

    c = Client(server, jid, password, **kw)
    for p in PEP_PLUGINS:
        c.register_plugin(p)
    c.events = []
    c.register_handler(
        Callback(
            "pep-events",
            MatchXPath(f"{{jabber:client}}message/{{{NS_PUBSUB_EVENT}}}event"),
            c.events.append,
        )
    )
    queried = []
    c.register_handler(
        Callback(
            "pep-caps-query",
            MatchXPath("{jabber:client}iq/{http://jabber.org/protocol/disco#info}query"),
            # From the server, or (Prosody) from the account's PEP service.
            lambda iq: queried.append(iq)
            if iq["type"] == "get" and iq["from"] in (server.domain, c.boundjid.bare)
            else None,
        )
    )
    c.caps_queries = queried
    await c.login(timeout=timeout, presence=False)
    if setup is not None:
        setup(c)
    for p in plugins:
        if isinstance(p, tuple):
            c.register_plugin(*p)
        else:
            c.register_plugin(p)
    for ns in interests:
        c.plugin["xep_0163"].add_interest(ns)
    await c.plugin["xep_0115"].update_caps(broadcast=False)
    c.send_presence()
    # The server handles the presence (sending its disco#info query, unless
    # it knows these caps) before it answers the ping; then the client's
    # answer to the query is handled before the second ping's.
    await c.ping_server(timeout=timeout)
    if queried:
        await asyncio.sleep(0.2)
        await c.ping_server(timeout=timeout)
    return c


def expect(client, xpath: str, pred=None, timeout: float = T):
    """Listens from now on for the first stanza `client` receives that
    matches `xpath` (and `pred`): call it before sending what provokes the
    stanza, then await what it returns (the stanza; TimeoutError if none
    comes within `timeout`)."""
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath

    fut = asyncio.get_running_loop().create_future()
    name = f"expect-{id(fut)}"

    def on(stanza):
        if not fut.done() and (pred is None or pred(stanza)):
            fut.set_result(stanza)

    client.register_handler(Callback(name, MatchXPath(xpath), on))

    async def wait():
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            client.remove_handler(name)

    return wait()


async def until(pred, timeout: float = 5.0, step: float = 0.05) -> bool:
    """Poll pred() until it is true or the time is up; returns its last value."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if pred():
            return True
        await asyncio.sleep(step)
    return bool(pred())
