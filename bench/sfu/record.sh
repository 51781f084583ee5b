#!/usr/bin/env bash
# Record the publishers' media once: three VP8 simulcast layers and Opus,
# live-encoded by GStreamer into `sfu-load record`, so every benchmark run
# replays the same packets at no encoding cost.
#
#   bench/sfu/record.sh OUTFILE [SECS]      (default 10 s)
#
# Needs bench/sfu/install.sh (GStreamer) and a built sfu-load (SFU_LOAD, or
# target/release|debug of CARGO_TARGET_DIR).  Recorded SSRCs: 1 = 320x180,
# 2 = 640x360, 3 = 1280x720 (VP8, pt 100), 4 = Opus (pt 111).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:?usage: record.sh OUTFILE [SECS]}"
SECS="${2:-10}"
PORT="${RECORD_PORT:-47100}"
# A keyframe must come this early in each video stream (keyframe-max-dist=90
# at 30 fps puts the first one at the start, the next 3 s later).
KEYFRAME_WITHIN_S=1.0

log() { printf '[bench/sfu/record] %s\n' "$*" >&2; }

find_sfu_load() {
  if [ -n "${SFU_LOAD:-}" ]; then echo "$SFU_LOAD"; return; fi
  local t="${CARGO_TARGET_DIR:-$HERE/../../target}"
  for p in "$t/release/sfu-load" "$t/debug/sfu-load"; do
    [ -x "$p" ] && { echo "$p"; return; }
  done
  echo "sfu-load not built: cargo build --release -p sfu-load (or set SFU_LOAD)" >&2
  return 1
}
SFU="$(find_sfu_load)"
command -v gst-launch-1.0 >/dev/null || { log "gst-launch-1.0 missing: run bench/sfu/install.sh"; exit 1; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$SFU" record --listen "127.0.0.1:$PORT" --secs "$SECS" --out "$OUT" &
rec=$!

# SMPTE bars scrolling 4 px a frame: detailed and moving enough that CBR
# reaches its target (a bouncing ball on black leaves 720p at half of it).
# Encoders run a second longer than the recording, so it is full to the end.
run_for=$(( ${SECS%.*} + 2 ))
video() { # SSRC WIDTH HEIGHT KBITS
  timeout "$run_for" gst-launch-1.0 -q \
    videotestsrc is-live=true pattern=smpte horizontal-speed=4 \
    ! "video/x-raw,width=$2,height=$3,framerate=30/1" \
    ! vp8enc deadline=1 cpu-used=16 end-usage=cbr target-bitrate=$(( $4 * 1000 )) keyframe-max-dist=90 \
    ! rtpvp8pay picture-id-mode=15-bit mtu=1200 pt=100 ssrc="$1" \
    ! udpsink host=127.0.0.1 port="$PORT" sync=false async=false &
  pids+=($!)
}
video 1 320 180 200
video 2 640 360 700
video 3 1280 720 2500
timeout "$run_for" gst-launch-1.0 -q \
  audiotestsrc is-live=true wave=sine freq=440 ! audio/x-raw,rate=48000,channels=2 \
  ! opusenc bitrate=32000 ! rtpopuspay pt=111 ssrc=4 \
  ! udpsink host=127.0.0.1 port="$PORT" sync=false async=false &
pids+=($!)

wait "$rec"
log "checking $OUT"
summary="$("$SFU" inspect "$OUT")"
python3 - "$KEYFRAME_WITHIN_S" "$summary" <<'PY'
import json, sys
want_key, r = float(sys.argv[1]), json.loads(sys.argv[2])
by = {s["ssrc"]: s for s in r["streams"]}
bad = [f"SSRC {x} missing" for x in (1, 2, 3, 4) if x not in by]
for x, size in {1: (320, 180), 2: (640, 360), 3: (1280, 720)}.items():
    s = by.get(x)
    if s is None:
        continue
    if s["first_keyframe_s"] is None or s["first_keyframe_s"] > want_key:
        bad.append(f"SSRC {x}: no keyframe in the first {want_key} s")
    elif (s["width"], s["height"]) != size:
        bad.append(f"SSRC {x}: keyframes are {s['width']}x{s['height']}, want {size[0]}x{size[1]}")
for s in r["streams"]:
    print(f"  ssrc {s['ssrc']}: pt {s['pt']}, {s['packets']} packets, clock {s['clock']}, "
          f"keyframes {s['vp8_keyframes']}, first at {s['first_keyframe_s']} s", file=sys.stderr)
if bad:
    sys.exit("recording is not usable: " + "; ".join(bad))
print(f"  {r['packets']} packets over {r['duration_s']:.1f} s: ok", file=sys.stderr)
PY
