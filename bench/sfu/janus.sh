#!/usr/bin/env bash
# Janus 1.1 (Debian's package) for bench/sfu: installed, configured for
# loopback only, started and stopped, all under one directory.
#
#   bench/sfu/janus.sh install          # apt (via install.sh), no daemon left running
#   bench/sfu/janus.sh start DIR        # config in DIR/etc, pid in DIR/janus.pid, log DIR/janus.log
#   bench/sfu/janus.sh stop DIR
#
# JANUS_CORE=N pins Janus to CPU N (taskset), so the load client can have the
# other core.  Janus listens on 127.0.0.1:8088 (HTTP API) and nothing else:
# WebSockets and every plugin but the VideoRoom are off, and ICE gathers on
# `lo` only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HTTP_PORT=8088
RTP_PORT_RANGE="20000-40000"
# How long `start` waits for the HTTP API to answer.
START_TIMEOUT_S=20
log() { printf '[bench/sfu/janus] %s\n' "$*" >&2; }

# Janus takes "a,b,c" lists of module file names; every module in a folder
# but the ones kept.
disable_list() { # FOLDER KEEP...
  local dir="$1"; shift
  local out=() f keep k
  for f in "$dir"/*.so; do
    [ -e "$f" ] || continue
    f="$(basename "$f")"; keep=0
    for k in "$@"; do [ "$f" = "$k" ] && keep=1; done
    [ "$keep" = 0 ] && out+=("$f")
  done
  local IFS=,; echo "${out[*]}"
}

folder() { # NAME: the packaged janus.jcfg's value for NAME_folder
  sed -n "s/^[[:space:]]*$1_folder = \"\\([^\"]*\\)\".*/\\1/p" /etc/janus/janus.jcfg | head -n1
}

write_config() { # DIR
  local etc="$1/etc"
  rm -rf "$etc" && cp -r /etc/janus "$etc"
  local plugins transports events loggers
  plugins="$(folder plugins)"; transports="$(folder transports)"
  events="$(folder events)"; loggers="$(folder loggers)"
  cat >"$etc/janus.jcfg" <<CFG
# Written by bench/sfu/janus.sh: loopback only, VideoRoom and HTTP only.
general: {
	configs_folder = "$etc"
	plugins_folder = "$plugins"
	transports_folder = "$transports"
	events_folder = "$events"
	loggers_folder = "$loggers"
	debug_level = 4
	log_to_stdout = true
	session_timeout = 60
}
certificates: {
}
media: {
	rtp_port_range = "$RTP_PORT_RANGE"
}
nat: {
	nice_debug = false
	ice_enforce_list = "lo"
}
plugins: {
	disable = "$(disable_list "$plugins" libjanus_videoroom.so)"
}
transports: {
	disable = "$(disable_list "$transports" libjanus_http.so)"
}
loggers: {
	disable = "$(disable_list "$loggers")"
}
events: {
	broadcast = false
	disable = "$(disable_list "$events")"
}
CFG
  cat >"$etc/janus.transport.http.jcfg" <<CFG
general: {
	json = "indented"
	base_path = "/janus"
	http = true
	port = $HTTP_PORT
	ip = "127.0.0.1"
	https = false
}
admin: {
	admin_http = false
	admin_https = false
}
cors: {
}
certificates: {
}
CFG
}

api_up() {
  python3 - "$HTTP_PORT" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/janus/info", timeout=1).read()
except Exception:
    sys.exit(1)
PY
}

start() { # DIR
  local dir="$1"
  command -v janus >/dev/null || { log "janus missing: bench/sfu/janus.sh install"; exit 1; }
  mkdir -p "$dir"
  if [ -f "$dir/janus.pid" ] && kill -0 "$(cat "$dir/janus.pid")" 2>/dev/null && api_up; then
    log "already running (pid $(cat "$dir/janus.pid"))"; return 0
  fi
  if api_up; then log "something already answers on 127.0.0.1:$HTTP_PORT"; exit 1; fi
  write_config "$dir"
  local pin=()
  [ -n "${JANUS_CORE:-}" ] && pin=(taskset -c "$JANUS_CORE")
  "${pin[@]}" janus -C "$dir/etc/janus.jcfg" -F "$dir/etc" >"$dir/janus.log" 2>&1 &
  echo $! >"$dir/janus.pid"
  local i
  for ((i = 0; i < START_TIMEOUT_S * 10; i++)); do
    if api_up; then log "up (pid $(cat "$dir/janus.pid"), log $dir/janus.log)"; return 0; fi
    kill -0 "$(cat "$dir/janus.pid")" 2>/dev/null || { log "janus exited; see $dir/janus.log"; exit 1; }
    sleep 0.1
  done
  log "no answer on 127.0.0.1:$HTTP_PORT after ${START_TIMEOUT_S}s; see $dir/janus.log"; exit 1
}

stop() { # DIR
  local pidf="$1/janus.pid" pid i
  [ -f "$pidf" ] || { log "not running (no $pidf)"; return 0; }
  pid="$(cat "$pidf")"
  if kill "$pid" 2>/dev/null; then
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidf"
  log "stopped"
}

case "${1:-}" in
  install) "$HERE/install.sh" ;;
  start) start "${2:?usage: janus.sh start DIR}" ;;
  stop) stop "${2:?usage: janus.sh stop DIR}" ;;
  *) echo "usage: janus.sh install|start DIR|stop DIR" >&2; exit 2 ;;
esac
