"""Drives `sfu-load run` (the load client) over its JSON-lines pipe.

Shared by the Janus and Conclave drivers: publish a recording into an SFU's
plain-RTP ingest, answer SDP offers with receiving endpoints, and read the
window's figures. Stdlib only.
"""

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# Recorded SSRCs (bench/sfu/record.sh): three VP8 layers, low to high, and Opus.
REC_VIDEO_LAYERS = (1, 2, 3)
REC_AUDIO = 4
VP8_PT = 100
OPUS_PT = 111


class LoadError(Exception):
    """The load client answered with an error, or is gone."""


def find_binary():
    """sfu-load from $SFU_LOAD, else the release (then debug) build."""
    if os.environ.get("SFU_LOAD"):
        return os.environ["SFU_LOAD"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for p in (target / "release" / "sfu-load", target / "debug" / "sfu-load"):
        if p.exists():
            return str(p)
    raise LoadError("sfu-load not built: cargo build --release -p sfu-load (or set SFU_LOAD)")


def build_release():
    """Builds the release binary (the one worth measuring) and returns its path."""
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "sfu-load"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "release" / "sfu-load")


class LoadClient:
    """One `sfu-load run` process. Answers come in command order, so one
    lock around write-then-read keeps callers from different threads apart."""

    def __init__(self, binary=None, core=None, stderr=None):
        cmd = [binary or find_binary(), "run"]
        if core is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(core)] + cmd
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1
        )
        self.pid = self.proc.pid
        self._lock = threading.Lock()

    def request(self, msg):
        with self._lock:
            try:
                self.proc.stdin.write(json.dumps(msg) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as e:
                raise LoadError(f"sfu-load is gone: {e}") from e
            line = self.proc.stdout.readline()
        if not line:
            raise LoadError(f"sfu-load exited (code {self.proc.poll()})")
        reply = json.loads(line)
        if reply.get("op") == "error":
            raise LoadError(f"sfu-load: {reply.get('error')} (id {reply.get('id')})")
        return reply

    def publish(self, pid, recording, dest, map_):
        """Replays `recording` to `dest` ("host:port"); `map_` is
        {recorded ssrc: (ssrc, pt)}."""
        m = {str(k): {"ssrc": v[0], "pt": v[1]} for k, v in map_.items()}
        return self.request({"op": "publish", "id": pid, "recording": str(recording), "dest": dest, "map": m})

    def subscribe(self, sid, offer, ip=None):
        """Answers `offer` with a new endpoint on `ip` (default 127.0.0.1)."""
        msg = {"op": "subscribe", "id": sid, "offer": offer}
        if ip is not None:
            msg["ip"] = ip
        return self.request(msg)["answer"]

    def renegotiate(self, sid, offer):
        return self.request({"op": "offer", "id": sid, "offer": offer})["answer"]

    def reset(self):
        return self.request({"op": "reset"})

    def stats(self):
        return self.request({"op": "stats"})

    def close(self, id_):
        return self.request({"op": "close", "id": id_})

    def quit(self, timeout=5):
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def simulcast_map(ssrcs, pt=VP8_PT, audio=None, audio_pt=OPUS_PT):
    """The publish map for recorded layers 1..3 onto `ssrcs` (low to high),
    plus recorded audio onto `audio` if given."""
    m = {rec: (out, pt) for rec, out in zip(REC_VIDEO_LAYERS, ssrcs)}
    if audio is not None:
        m[REC_AUDIO] = (audio, audio_pt)
    return m


def cpu_seconds(pid):
    """utime + stime of a process, all its threads, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14, stime 15 (1-based).
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
