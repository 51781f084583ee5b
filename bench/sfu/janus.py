"""A small client for Janus's HTTP API, just what bench/sfu needs: a
VideoRoom, remote (plain-RTP) publishers, and subscribers whose WebRTC side
is an endpoint of `sfu-load run`. Stdlib only; loopback only.

One Session carries any number of handles; a single long-poll thread takes
its events (which also keeps it alive) and hands each to its handle.
"""

import http.client
import json
import queue
import secrets
import threading
import time
import urllib.error
import urllib.request

BASE = "http://127.0.0.1:8088/janus"
# Janus holds a long poll this long before it answers with a keepalive.
LONG_POLL_S = 30
# Events taken per long poll.
MAX_EVENTS = 50
REQUEST_TIMEOUT_S = 10
EVENT_TIMEOUT_S = 20

# janus_videoroom.c (1.1.2): a remote publisher's stream at mindex m is
# expected with SSRC REMOTE_PUBLISHER_BASE_SSRC + m * REMOTE_PUBLISHER_SSRC_STEP,
# simulcast layers at +1 and +2. Streams get their mindex from their order.
REMOTE_BASE_SSRC = 1000
REMOTE_SSRC_STEP = 10
VIDEO_MINDEX = 0
AUDIO_MINDEX = 1
VIDEO_SSRCS = tuple(REMOTE_BASE_SSRC + VIDEO_MINDEX * REMOTE_SSRC_STEP + k for k in range(3))
AUDIO_SSRC = REMOTE_BASE_SSRC + AUDIO_MINDEX * REMOTE_SSRC_STEP
# The 720p layer, all temporal layers: what Conclave forwards to a receiver
# that sets no constraints.
TOP_SUBSTREAM = 2
TOP_TEMPORAL = 2


class JanusError(Exception):
    pass


def _post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as r:
        reply = json.load(r)
    if reply.get("janus") == "error":
        raise JanusError(reply.get("error"))
    return reply


def info(base=BASE):
    with urllib.request.urlopen(f"{base}/info", timeout=REQUEST_TIMEOUT_S) as r:
        return json.load(r)


class Session:
    def __init__(self, base=BASE):
        self.base = base
        self.id = _post(base, {"janus": "create", "transaction": secrets.token_hex(6)})["data"]["id"]
        self.url = f"{base}/{self.id}"
        self.handles = {}
        self.orphans = queue.Queue()
        self.closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name=f"janus-poll-{self.id}", daemon=True)
        self._poller.start()

    def _poll(self):
        while not self.closed.is_set():
            try:
                with urllib.request.urlopen(f"{self.url}?maxev={MAX_EVENTS}", timeout=LONG_POLL_S + 10) as r:
                    evs = json.load(r)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
                if self.closed.is_set():
                    return
                time.sleep(0.5)
                continue
            for ev in evs if isinstance(evs, list) else [evs]:
                h = self.handles.get(ev.get("sender"))
                (h.events if h else self.orphans).put(ev)

    def request(self, body):
        return _post(self.url, dict(body, transaction=secrets.token_hex(6)))

    def attach(self, plugin="janus.plugin.videoroom"):
        hid = self.request({"janus": "attach", "plugin": plugin})["data"]["id"]
        h = Handle(self, hid)
        self.handles[hid] = h
        return h

    def destroy(self):
        self.closed.set()
        try:
            self.request({"janus": "destroy"})
        except (JanusError, urllib.error.URLError, OSError):
            pass


class Handle:
    def __init__(self, session, hid):
        self.session = session
        self.id = hid
        self.url = f"{session.url}/{hid}"
        self.events = queue.Queue()

    def message(self, body, jsep=None):
        """Sends a plugin message; returns the plugin's data for synchronous
        requests, or the transaction id for asynchronous ones (see `wait`)."""
        tx = secrets.token_hex(6)
        msg = {"janus": "message", "body": body, "transaction": tx}
        if jsep is not None:
            msg["jsep"] = jsep
        reply = _post(self.url, msg)
        if reply.get("janus") == "ack":
            return tx
        data = reply.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{body.get('request')}: {data['error']}")
        return data

    def wait(self, tx, timeout=EVENT_TIMEOUT_S):
        """The plugin event answering transaction `tx`, with its jsep if any."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise JanusError(f"no answer to transaction {tx} in {timeout}s")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if ev.get("transaction") != tx or ev.get("janus") != "event":
                continue
            data = ev.get("plugindata", {}).get("data", {})
            if "error" in data:
                raise JanusError(data["error"])
            return data, ev.get("jsep")

    def detach(self):
        self.session.handles.pop(self.id, None)
        try:
            _post(self.url, {"janus": "detach", "transaction": secrets.token_hex(6)})
        except (JanusError, urllib.error.URLError, OSError):
            pass


def create_room(handle, room, publishers=100):
    """A VP8/Opus room; simulcast is per publisher stream, so nothing to
    allow here. Bitrate 0: no REMB cap."""
    return handle.message(
        {
            "request": "create",
            "room": room,
            "publishers": publishers,
            "bitrate": 0,
            "videocodec": "vp8",
            "audiocodec": "opus",
            "permanent": False,
        }
    )


def destroy_room(handle, room):
    try:
        handle.message({"request": "destroy", "room": room})
    except JanusError:
        pass


def add_remote_publisher(handle, room, display="replay"):
    """A publisher Janus feeds from plain RTP: VP8 simulcast at mindex 0,
    Opus at mindex 1. Returns (feed id, port to send RTP to)."""
    data = handle.message(
        {
            "request": "add_remote_publisher",
            "room": room,
            "display": display,
            "iface": "127.0.0.1",
            "streams": [
                {"type": "video", "mindex": VIDEO_MINDEX, "mid": str(VIDEO_MINDEX), "codec": "vp8", "simulcast": True},
                {"type": "audio", "mindex": AUDIO_MINDEX, "mid": str(AUDIO_MINDEX), "codec": "opus"},
            ],
        }
    )
    return data["id"], data["port"]


def remove_remote_publisher(handle, room, feed):
    try:
        handle.message({"request": "remove_remote_publisher", "room": room, "id": feed})
    except JanusError:
        pass


def offer_ip(sdp):
    """The IPv4 address of Janus's first host candidate. Janus never gathers
    on loopback (ice.c skips IFF_LOOPBACK) and libnice will not pair its
    candidates with a 127.0.0.1 one, so the subscriber binds this address:
    one of this host's own, which the kernel delivers over `lo` all the same."""
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) > 7 and parts[7] == "host" and ":" not in parts[4]:
                return parts[4]
    raise JanusError("Janus's offer has no IPv4 host candidate")


# The recording's simulcast layers, lowest first (bench/sfu/record.sh).
LAYER_HEIGHTS = (180, 360, 720)


def substream_for(max_height):
    """The highest substream no taller than `max_height` (None: the top)."""
    if max_height is None:
        return TOP_SUBSTREAM
    return max([i for i, h in enumerate(LAYER_HEIGHTS) if h <= max_height] or [0])


def subscribe(session, room, feeds, load, sid, video=None, substream=TOP_SUBSTREAM):
    """A subscriber to the audio of `feeds` and the video of `video` (all
    of `feeds` when None), answered by the load client endpoint `sid`.
    Returns its handle once Janus has taken the answer."""
    h = session.attach()
    streams = []
    video = feeds if video is None else video
    for f in feeds:
        if f in video:
            streams.append({"feed": f, "mid": str(VIDEO_MINDEX), "substream": substream, "temporal": TOP_TEMPORAL})
        streams.append({"feed": f, "mid": str(AUDIO_MINDEX)})
    tx = h.message({"request": "join", "ptype": "subscriber", "room": room, "streams": streams})
    _, jsep = h.wait(tx)
    if not jsep or jsep.get("type") != "offer":
        raise JanusError(f"subscriber {sid}: join brought no offer")
    answer = load.subscribe(sid, jsep["sdp"], ip=offer_ip(jsep["sdp"]))
    tx = h.message({"request": "start"}, jsep={"type": "answer", "sdp": answer})
    h.wait(tx)
    return h
