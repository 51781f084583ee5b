"""A meeting participant for tests: slixmpp for signalling (guest login,
Jitsi's conference request, the MUC, Jingle) and aiortc for the media, with
a small Jingle<->SDP translation of our own (aiortc speaks SDP only).

The translation follows what a Jitsi client does with Unified Plan: the
offer's `audio` and `video` contents become the m-sections the participant
sends on, and each other participant's source gets a receive-only m-section
of its own, demultiplexed by the SSRC the offer signals."""

import asyncio
import fractions
import math
import time
import uuid
import xml.etree.ElementTree as ET

import aioice.ice
import numpy
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import AudioFrame
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from clients import login

# Media stays on loopback (aioice would offer every other interface).
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []

NS_FOCUS = "http://jitsi.org/protocol/focus"
NS_JINGLE = "urn:xmpp:jingle:1"
NS_RTP = "urn:xmpp:jingle:apps:rtp:1"
NS_FB = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0"
NS_HDR = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0"
NS_SSMA = "urn:xmpp:jingle:apps:rtp:ssma:0"
NS_ICE = "urn:xmpp:jingle:transports:ice-udp:1"
NS_DTLS = "urn:xmpp:jingle:apps:dtls:0"
NS_GROUP = "urn:xmpp:jingle:apps:grouping:0"
NS_JITMEET = "http://jitsi.org/jitmeet"
NS_COLIBRI = "http://jitsi.org/protocol/colibri"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"


def q(ns, name):
    return f"{{{ns}}}{name}"


class Tone(AudioStreamTrack):
    """A 440 Hz sine, so that receivers can see energy in what arrives."""

    def __init__(self, level=0.3):
        super().__init__()
        self.level = level
        self._t = 0

    async def recv(self):
        frame = await super().recv()
        n = frame.samples
        t = (numpy.arange(n) + self._t) / 48000
        self._t += n
        pcm = (numpy.sin(2 * math.pi * 440 * t) * 32767 * self.level).astype(numpy.int16)
        out = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        out.sample_rate = 48000
        out.pts = frame.pts
        out.time_base = fractions.Fraction(1, 48000)
        return out


def _sources(desc, media):
    """(ssrc, owner, msid) and groups of one description."""
    out, groups = [], []
    for s in desc.findall(q(NS_SSMA, "source")):
        owner = None
        info = s.find(q(NS_JITMEET, "ssrc-info"))
        if info is not None:
            owner = info.get("owner")
        msid = None
        for p in s.findall(q(NS_SSMA, "parameter")):
            if p.get("name") == "msid":
                msid = p.get("value")
        out.append({"ssrc": int(s.get("ssrc")), "owner": owner, "msid": msid, "name": s.get("name"), "media": media})
    for g in desc.findall(q(NS_SSMA, "ssrc-group")):
        groups.append((g.get("semantics"), [int(x.get("ssrc")) for x in g.findall(q(NS_SSMA, "source"))]))
    return out, groups


class Offer:
    """The focus's session-initiate, kept as a model that source-add and
    source-remove change; `sdp()` renders it for aiortc."""

    def __init__(self, jingle):
        self.sid = jingle.get("sid")
        self.contents = {}
        self.remote = {}  # ssrc of a stream's first source -> stream
        self.order = []
        self.kinds = {}
        for c in jingle.findall(q(NS_JINGLE, "content")):
            name = c.get("name")
            desc = c.find(q(NS_RTP, "description"))
            t = c.find(q(NS_ICE, "transport"))
            self.contents[name] = (desc, t)
            self.ws = None
            ws = t.find(q(NS_COLIBRI, "web-socket")) if t is not None else None
            if ws is not None:
                self.ws = ws.get("url")
        self.transport = next(iter(self.contents.values()))[1]
        for name, (desc, _) in self.contents.items():
            self.add(desc, name)

    def add(self, desc, media):
        sources, groups = _sources(desc, media)
        rtx = {g[1][1] for g in groups if g[0] == "FID" and len(g[1]) == 2}
        for s in sources:
            if s["ssrc"] in rtx:
                continue
            s["rtx"] = next((g[1][1] for g in groups if g[0] == "FID" and g[1][0] == s["ssrc"]), None)
            if s["ssrc"] not in self.remote:
                self.remote[s["ssrc"]] = s
                if s["ssrc"] not in self.kinds:
                    self.order.append(s["ssrc"])
                self.kinds[s["ssrc"]] = media

    def remove(self, desc):
        for s in desc.findall(q(NS_SSMA, "source")):
            self.remote.pop(int(s.get("ssrc")), None)

    def sdp(self):
        t = self.transport
        fp = t.find(q(NS_DTLS, "fingerprint"))
        mids = ["audio", "video"] + [f"r{s}" for s in self.order]
        lines = ["v=0", "o=- 1 2 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE " + " ".join(mids), "a=msid-semantic: WMS *"]

        def section(mid, media, direction, stream=None):
            desc = self.contents[media][0]
            pts = desc.findall(q(NS_RTP, "payload-type"))
            lines.append(f"m={media} 9 UDP/TLS/RTP/SAVPF " + " ".join(p.get("id") for p in pts))
            lines.append("c=IN IP4 0.0.0.0")
            lines.append(f"a=ice-ufrag:{t.get('ufrag')}")
            lines.append(f"a=ice-pwd:{t.get('pwd')}")
            lines.append(f"a=fingerprint:{fp.get('hash')} {fp.text.strip()}")
            lines.append("a=setup:actpass")
            lines.append(f"a=mid:{mid}")
            lines.append(f"a={direction}")
            lines.append("a=rtcp-mux")
            for h in desc.findall(q(NS_HDR, "rtp-hdrext")):
                lines.append(f"a=extmap:{h.get('id')} {h.get('uri')}")
            for p in pts:
                ch = p.get("channels")
                enc = f"{p.get('name')}/{p.get('clockrate')}" + (f"/{ch}" if ch and ch != "1" else "")
                lines.append(f"a=rtpmap:{p.get('id')} {enc}")
                params = [f"{x.get('name')}={x.get('value')}" for x in p.findall(q(NS_RTP, "parameter"))]
                if params:
                    lines.append(f"a=fmtp:{p.get('id')} " + ";".join(params))
                for fb in p.findall(q(NS_FB, "rtcp-fb")):
                    sub = f" {fb.get('subtype')}" if fb.get("subtype") else ""
                    lines.append(f"a=rtcp-fb:{p.get('id')} {fb.get('type')}{sub}")
            for c in t.findall(q(NS_ICE, "candidate")):
                lines.append(
                    f"a=candidate:{c.get('foundation')} {c.get('component')} {c.get('protocol')} "
                    f"{c.get('priority')} {c.get('ip')} {c.get('port')} typ {c.get('type')}"
                )
            if stream is not None:
                msid = stream["msid"] or f"{stream['owner']} {stream['ssrc']}"
                ssrcs = [stream["ssrc"]] + ([stream["rtx"]] if stream["rtx"] else [])
                if stream["rtx"]:
                    lines.append(f"a=ssrc-group:FID {stream['ssrc']} {stream['rtx']}")
                for s in ssrcs:
                    lines.append(f"a=ssrc:{s} cname:{stream['owner']}")
                    lines.append(f"a=ssrc:{s} msid:{msid}")

        # Written from the bridge's side: it only receives on the
        # participant's own sections, and only sends on the others'; so
        # no receiver waits on a section the bridge never sends to.
        section("audio", "audio", "recvonly")
        section("video", "video", "recvonly")
        for ssrc in self.order:
            s = self.remote.get(ssrc)
            if s is None:
                # Gone: the m-section stays, inactive, so mids keep their places.
                section(f"r{ssrc}", self.kinds[ssrc], "inactive")
            else:
                section(f"r{ssrc}", s["media"], "sendonly", s)
        return "\r\n".join(lines) + "\r\n"


def parse_sdp(sdp):
    """The answer's m-sections: mid -> attribute lines, plus session lines."""
    sections, cur = {}, None
    for line in sdp.splitlines():
        if line.startswith("m="):
            cur = {"m": line, "a": []}
        elif line.startswith("a=") and cur is not None:
            cur["a"].append(line[2:])
            if line.startswith("a=mid:"):
                sections[line[6:]] = cur
    return sections


def accept_jingle(sid, answer_sdp, endpoint, room):
    """session-accept from aiortc's answer: the audio and video sections'
    sources, named as Jitsi clients name them, and the shared transport."""
    secs = parse_sdp(answer_sdp)
    j = ET.Element(q(NS_JINGLE, "jingle"), {"action": "session-accept", "sid": sid, "responder": f"{room}/{endpoint}"})
    first = secs["audio"]
    attrs = dict(a.split(":", 1) if ":" in a else (a, "") for a in first["a"])
    for media, tag in (("audio", "a0"), ("video", "v0")):
        sec = secs[media]
        c = ET.SubElement(j, q(NS_JINGLE, "content"), {"creator": "initiator", "name": media, "senders": "both"})
        d = ET.SubElement(c, q(NS_RTP, "description"), {"media": media})
        ssrcs, groups = {}, []
        for a in sec["a"]:
            if a.startswith("ssrc:"):
                num, rest = a[5:].split(" ", 1)
                ssrcs.setdefault(int(num), {})
                if rest.startswith("msid:"):
                    ssrcs[int(num)]["msid"] = rest[5:]
            elif a.startswith("ssrc-group:"):
                sem, *nums = a[11:].split()
                groups.append((sem, [int(n) for n in nums]))
        for ssrc, info in ssrcs.items():
            s = ET.SubElement(d, q(NS_SSMA, "source"), {"ssrc": str(ssrc), "name": f"{endpoint}-{tag}"})
            if info.get("msid"):
                ET.SubElement(s, q(NS_SSMA, "parameter"), {"name": "msid", "value": info["msid"]})
            ET.SubElement(s, q(NS_JITMEET, "ssrc-info"), {"owner": f"{room}/{endpoint}"})
        for sem, nums in groups:
            g = ET.SubElement(d, q(NS_SSMA, "ssrc-group"), {"semantics": sem})
            for n in nums:
                ET.SubElement(g, q(NS_SSMA, "source"), {"ssrc": str(n)})
        t = ET.SubElement(c, q(NS_ICE, "transport"), {"ufrag": attrs["ice-ufrag"], "pwd": attrs["ice-pwd"]})
        for a in first["a"]:
            if a.startswith("fingerprint:"):
                hash_, value = a[12:].split(" ", 1)
                fp = ET.SubElement(t, q(NS_DTLS, "fingerprint"), {"hash": hash_, "setup": attrs.get("setup", "active")})
                fp.text = value
        for a in first["a"]:
            if a.startswith("candidate:"):
                f = a[10:].split()
                ET.SubElement(
                    t,
                    q(NS_ICE, "candidate"),
                    {
                        "foundation": f[0], "component": f[1], "protocol": f[2].lower(), "priority": f[3],
                        "ip": f[4], "port": f[5], "type": f[7], "generation": "0", "id": uuid.uuid4().hex[:8],
                    },
                )
    return j


class Participant:
    """One guest in a meeting: joins, answers the focus, sends a tone and
    a test picture, and records what it receives per remote stream."""

    def __init__(
        self, server, room, nick=None, audio_level=0.3, send=True, account=None, forge_fingerprint=False, broadcast=True
    ):
        self.server = server
        self.room = room
        self.nick = nick or uuid.uuid4().hex[:8]
        self.audio_level = audio_level
        self.send = send
        # (jid, password) of an account; a guest (SASL ANONYMOUS) otherwise
        self.account = account
        # announce a DTLS fingerprint that is not its certificate's
        self.forge_fingerprint = forge_fingerprint
        # send available presence after login (lib-jitsi-meet never does)
        self.broadcast = broadcast
        self.pc = None
        self.offer = None
        self.tracks = {}  # mid -> track
        self.frames = {}  # mid -> [(time, width, energy)]
        self.jingle_log = []
        self.focus_iqs = []
        self.presences = []  # (from, type, status codes, role)
        self.affiliations = {}
        self.accepted = asyncio.Event()
        self._lock = asyncio.Lock()

    async def join(self, password=None):
        jid, pw = self.account or (self.server.guest_domain, "")
        self.c = await login(self.server, jid, pw, presence=self.broadcast)
        self.c.register_handler(
            Callback(f"jingle-{self.nick}", MatchXPath(f"{{jabber:client}}iq/{{{NS_JINGLE}}}jingle"), self._on_jingle)
        )
        self.c.register_handler(
            Callback(f"mute-{self.nick}", MatchXPath("{jabber:client}iq/{http://jitsi.org/jitmeet/audio}mute"), self._on_other)
        )
        self.c.register_handler(
            Callback(f"presence-{self.nick}", MatchXPath("{jabber:client}presence"), self._on_presence)
        )
        res = await self.c.iq(
            "set",
            f"<conference xmlns='{NS_FOCUS}' room='{self.room}' machine-uid='{uuid.uuid4().hex}'>"
            "<property name='startAudioMuted' value='false'/></conference>",
            to=f"focus.{self.server.domain}",
        )
        self.conference = res.xml.find(q(NS_FOCUS, "conference"))
        self.enter(password)
        return self

    def enter(self, password=None):
        """The MUC join presence, as a Jitsi client sends it (again, once
        admitted from a lobby)."""
        self.c.send_raw(
            f"<presence to='{self.room}/{self.nick}'><x xmlns='{NS_MUC}'>"
            + (f"<password>{password}</password>" if password else "")
            + "</x>"
            f"<SourceInfo>{{\"{self.nick}-a0\":{{\"muted\":false}},\"{self.nick}-v0\":{{\"muted\":false,\"videoType\":\"camera\"}}}}</SourceInfo>"
            "</presence>"
        )

    def _on_presence(self, p):
        x = p.xml.find(q(NS_MUC_USER, "x"))
        codes, role, aff = set(), None, None
        if x is not None:
            codes = {s.get("code") for s in x.findall(q(NS_MUC_USER, "status"))}
            item = x.find(q(NS_MUC_USER, "item"))
            role = item.get("role") if item is not None else None
            aff = item.get("affiliation") if item is not None else None
        self.presences.append((p["from"].full, p["type"], codes, role))
        self.affiliations[p["from"].full] = aff

    def role_of(self, nick):
        roles = [r for f, _, _, r in self.presences if f == f"{self.room}/{nick}"]
        return roles[-1] if roles else None

    def actions(self, action):
        """The Jingle IQs of one action received so far, as elements."""
        return [ET.fromstring(x) for a, _, x in self.jingle_log if a == action]

    def bridge_port(self):
        c = self.offer.transport.find(q(NS_ICE, "candidate"))
        return int(c.get("port"))

    def _on_other(self, iq):
        self.focus_iqs.append(iq)
        iq.reply().send()

    def _on_jingle(self, iq):
        asyncio.ensure_future(self._jingle(iq))

    async def _jingle(self, iq):
        j = iq.xml.find(q(NS_JINGLE, "jingle"))
        action = j.get("action")
        self.jingle_log.append((action, iq["from"].full, ET.tostring(j, encoding="unicode")))
        iq.reply().send()
        async with self._lock:
            if action == "session-initiate":
                self.offer = Offer(j)
                await self._negotiate(first=True)
            elif action == "session-terminate" and self.pc is not None:
                # the focus ended the session (its bridge went away): a new
                # session-initiate follows
                self.accepted.clear()
                await self.pc.close()
                self.pc, self.offer = None, None
            elif action in ("source-add", "source-remove") and self.offer is not None:
                for c in j.findall(q(NS_JINGLE, "content")):
                    d = c.find(q(NS_RTP, "description"))
                    if d is None:
                        continue
                    if action == "source-add":
                        self.offer.add(d, c.get("name"))
                    else:
                        self.offer.remove(d)
                await self._negotiate(first=False)

    async def _negotiate(self, first):
        if first:
            # max-bundle, as Jitsi's clients and browsers bundle: under
            # aiortc's default (balanced), receive-only video sections of a
            # first offer stay on a transport of their own that BUNDLE
            # never connects, and their media is dropped.
            self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))

            @self.pc.on("track")
            def on_track(track):
                for t in self.pc.getTransceivers():
                    if t.receiver.track is track:
                        self.tracks[t.mid] = track
                        asyncio.ensure_future(self._consume(t.mid, track))

        await self.pc.setRemoteDescription(RTCSessionDescription(self.offer.sdp(), "offer"))
        if first and self.send:
            for t in self.pc.getTransceivers():
                if t.mid == "audio":
                    t.sender.replaceTrack(Tone(self.audio_level))
                    t.direction = "sendonly"
                elif t.mid == "video":
                    t.sender.replaceTrack(VideoStreamTrack())
                    t.direction = "sendonly"
        answer = await self.pc.createAnswer()
        try:
            await self.pc.setLocalDescription(answer)
        except ValueError:
            import sys
            print("OFFER", [l for l in self.offer.sdp().splitlines() if l[:3] in ("m=a", "m=v", "a=m")], file=sys.stderr)
            print("ANSWER", [l for l in answer.sdp.splitlines() if l[:3] in ("m=a", "m=v", "a=m")], file=sys.stderr)
            raise
        if first:
            accept = accept_jingle(self.offer.sid, self.pc.localDescription.sdp, self.nick, self.room)
            if self.forge_fingerprint:
                for fp in accept.iter(q(NS_DTLS, "fingerprint")):
                    fp.text = ":".join(["AB"] * (len(fp.text.split(":"))))
            await self.send_accept(accept)

    async def send_accept(self, accept):
        iq = self.c.Iq()
        iq["type"] = "set"
        iq["to"] = f"{self.room}/focus"
        iq.append(accept)
        res = await iq.send(timeout=10)
        assert res["type"] == "result"
        self.accepted.set()

    async def _consume(self, mid, track):
        log = self.frames.setdefault(mid, [])
        while True:
            try:
                f = await track.recv()
            except Exception:
                return
            if track.kind == "video":
                log.append((time.monotonic(), f.width, 0.0))
            else:
                a = f.to_ndarray().astype(numpy.float64)
                log.append((time.monotonic(), 0, float(numpy.sqrt(numpy.mean(a * a)))))

    def received(self, since=0.0):
        """Per remote m-section: (kind, frames since `since`, max width,
        mean energy)."""
        out = {}
        for mid, log in self.frames.items():
            recent = [x for x in log if x[0] >= since]
            kind = self.tracks[mid].kind
            out[mid] = (
                kind,
                len(recent),
                max((x[1] for x in recent), default=0),
                (sum(x[2] for x in recent) / len(recent)) if recent else 0.0,
            )
        return out

    def owner_of(self, mid):
        if not mid.startswith("r") or self.offer is None:
            return None
        s = self.offer.remote.get(int(mid[1:]))
        return s["owner"].split("/")[-1] if s else None

    async def restart(self):
        """What lib-jitsi-meet does when ICE to the bridge fails: it closes
        its peer connection and ends the session with
        `<bridge-session restart='true'/>`, then answers the new offer."""
        old, sid = self.pc, self.offer.sid
        self.accepted.clear()
        await old.close()
        return await self.to_focus(
            f"<jingle xmlns='{NS_JINGLE}' action='session-terminate' sid='{sid}'>"
            "<reason><connectivity-error/><text>ICE FAILED</text></reason>"
            f"<bridge-session xmlns='{NS_FOCUS}' id='{sid}' restart='true'/></jingle>"
        )

    async def to_focus(self, payload):
        """An IQ set to the focus occupant; raises IqError on an error."""
        iq = self.c.Iq()
        iq["type"] = "set"
        iq["to"] = f"{self.room}/focus"
        iq.append(ET.fromstring(payload))
        return await iq.send(timeout=10)

    async def leave(self):
        if self.pc is not None:
            await self.pc.close()
        self.c.send_raw(f"<presence to='{self.room}/{self.nick}' type='unavailable'/>")
        await asyncio.sleep(0.1)
        self.c.disconnect()


class PlainPublisher(Participant):
    """A participant whose media comes as plain RTP on the bridge's
    benchmark ingest (`meetings.rtp_ingest`), not over ICE and DTLS: its
    session-accept announces fixed SSRCs (an audio one, and `layers`
    simulcast video ones) and a transport that never connects."""

    def __init__(self, server, room, layers=1, **kw):
        super().__init__(server, room, send=False, **kw)
        base = uuid.uuid4().int & 0x0FFF_FFF0 | 0x1000_0000
        self.ssrcs = {"audio": base, "video": [base + 1 + i for i in range(layers)]}

    def _answer_sdp(self):
        video = self.ssrcs["video"]
        fp = ":".join(["00"] * 32)
        common = ["a=ice-ufrag:plainrtp", "a=ice-pwd:plainrtpplainrtpplainrtp", f"a=fingerprint:sha-256 {fp}", "a=setup:active"]
        lines = ["m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:audio", *common, f"a=ssrc:{self.ssrcs['audio']} msid:{self.nick} a0"]
        lines += ["m=video 9 UDP/TLS/RTP/SAVPF 100", "a=mid:video", *common]
        lines += [f"a=ssrc:{s} msid:{self.nick} v0" for s in video]
        if len(video) > 1:
            lines.append("a=ssrc-group:SIM " + " ".join(map(str, video)))
        return "\r\n".join(lines) + "\r\n"

    async def _negotiate(self, first):
        if not first:
            return
        await self.send_accept(accept_jingle(self.offer.sid, self._answer_sdp(), self.nick, self.room))


class Channel:
    """A bridge channel (colibri-ws) at the URL the offer gave, as Jitsi's
    clients open it, with the websockets library's defaults but for
    trusting the test server's self-signed certificate."""

    def __init__(self, url):
        self.url = url
        self.messages = []

    async def open(self):
        import ssl

        import websockets

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.ws = await websockets.connect(self.url, ssl=ctx)
        self._task = asyncio.ensure_future(self._read())
        return self

    async def _read(self):
        import json

        try:
            async for m in self.ws:
                self.messages.append(json.loads(m))
        except Exception:
            pass

    async def send(self, obj):
        import json

        await self.ws.send(json.dumps(obj))

    def of(self, cls):
        return [m for m in self.messages if m.get("colibriClass") == cls]

    async def close(self):
        await self.ws.close()
