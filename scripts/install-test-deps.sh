#!/usr/bin/env bash
# Install what the end-to-end tests need: a Python venv with slixmpp + pytest
# (tests/.venv) and the Node packages in tests/node.  Idempotent and fast on
# re-runs: each step is skipped when its inputs have not changed.
#
#   scripts/install-test-deps.sh                 # Python + Node deps
#   scripts/install-test-deps.sh --with-prosody  # also Debian's Prosody (reference server, TARGET=prosody)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/tests/.venv"
REQ="$ROOT/tests/requirements.txt"
NODE_DIR="$ROOT/tests/node"
WITH_PROSODY=0
for arg in "$@"; do
  case "$arg" in
    --with-prosody) WITH_PROSODY=1 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[install-test-deps] %s\n' "$*"; }

APT_UPDATED=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "need root to apt-get install $*" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [ "$APT_UPDATED" = 0 ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  apt-get install -y -qq "$@"
}

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# --- Python ------------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  log "creating $VENV"
  rm -rf "$VENV"
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    log "python3 -m venv failed; installing python3-venv"
    rm -rf "$VENV"
    apt_install python3-venv python3-pip
    "$PYTHON" -m venv "$VENV"
  fi
fi
py_stamp="$VENV/.requirements.sha256"
py_want="$(hash_of "$REQ")"
if [ "$(cat "$py_stamp" 2>/dev/null || true)" != "$py_want" ]; then
  log "pip install -r tests/requirements.txt"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ"
  echo "$py_want" >"$py_stamp"
else
  log "python deps up to date"
fi

# --- Node --------------------------------------------------------------------
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: Node.js is required for tests/node" >&2
  exit 1
fi
node_stamp="$NODE_DIR/node_modules/.deps.sha256"
if [ -f "$NODE_DIR/package-lock.json" ]; then
  node_want="$(hash_of "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json")"
else
  node_want="$(hash_of "$NODE_DIR/package.json")"
fi
if [ "$(cat "$node_stamp" 2>/dev/null || true)" != "$node_want" ]; then
  cd "$NODE_DIR"
  if [ -f package-lock.json ]; then
    log "npm ci (tests/node)"
    npm ci --no-audit --no-fund --loglevel=error
  else
    log "npm install (tests/node)"
    npm install --no-audit --no-fund --loglevel=error
    node_want="$(hash_of "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json")"
  fi
  echo "$node_want" >"$node_stamp"
  cd "$ROOT"
else
  log "node deps up to date"
fi

# --- Debian's Chromium, for the meeting tests in a real browser --------------
if ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium (Debian)"
  apt_install --no-install-recommends chromium || log "WARNING: chromium could not be installed; the browser test will fail and say so"
fi
# The emoji of reactions, as a person's system draws them, in the screenshots.
if [ ! -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
  log "installing fonts-noto-color-emoji (Debian)"
  apt_install --no-install-recommends fonts-noto-color-emoji || log "WARNING: no emoji font; reactions show as boxes in screenshots"
fi

# --- a command-line client for a smoke test -----------------------------------
if ! command -v go-sendxmpp >/dev/null 2>&1; then
  log "installing go-sendxmpp (Debian)"
  apt_install go-sendxmpp || log "WARNING: go-sendxmpp could not be installed; its smoke test will be skipped"
fi

# --- tsung, for the benchmark smoke (bench/xmpp/run --smoke) ------------------
if ! command -v tsung >/dev/null 2>&1; then
  log "installing tsung (Debian)"
  apt_install --no-install-recommends tsung || log "WARNING: tsung could not be installed; bench/xmpp/run --smoke will try again"
fi

# --- optional reference server -------------------------------------------------
if [ "$WITH_PROSODY" = 1 ]; then
  if ! command -v prosody >/dev/null 2>&1; then
    log "installing prosody (reference server)"
    apt_install prosody openssl
  fi
  # The Debian package may start a system instance; the tests run their own.
  if command -v service >/dev/null 2>&1; then service prosody stop >/dev/null 2>&1 || true; fi
fi
log "done"
