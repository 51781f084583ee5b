#!/usr/bin/env bash
# Install what bench/sfu needs from Debian: Janus 1.1 (the reference SFU) and
# GStreamer's VP8/Opus encoders (to make the recording the publishers replay).
# Idempotent: apt-get runs only for what is missing.  Nothing here starts a
# service: Debian's janus package ships a systemd unit, which is stopped and
# disabled so that only bench/sfu/janus.sh ever runs Janus (on loopback).
#
#   bench/sfu/install.sh            # Janus and GStreamer
#   bench/sfu/install.sh gstreamer  # GStreamer only (the CI smoke measures Conclave alone)
set -euo pipefail

log() { printf '[bench/sfu/install] %s\n' "$*"; }

# A package counts as present when dpkg says it is installed.
missing() {
  local want=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || want+=("$p")
  done
  printf '%s\n' "${want[@]}"
}

install_system_deps() {
  local pkgs
  local want=(gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
  [ "${1:-all}" = gstreamer ] || want+=(janus)
  mapfile -t pkgs < <(missing "${want[@]}")
  if [ "${#pkgs[@]}" -gt 0 ] && [ -n "${pkgs[0]}" ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "need root to apt-get install ${pkgs[*]}" >&2
      return 1
    fi
    log "installing ${pkgs[*]} (Debian)"
    # policy-rc.d 101 keeps the maintainer scripts from starting janus.service.
    local policy=/usr/sbin/policy-rc.d created=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
    fi
    local rc=0
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; } || rc=$?
    [ "$created" = 1 ] && rm -f "$policy"
    [ "$rc" = 0 ] || { log "apt-get failed ($rc)"; return "$rc"; }
  else
    log "${want[*]} already installed"
  fi
  # Whatever the package did, no packaged Janus may run beside ours.
  if command -v systemctl >/dev/null 2>&1; then
    # `disable` works without a running systemd; `stop` only with one.
    systemctl disable janus.service >/dev/null 2>&1 || true
    [ -d /run/systemd/system ] && systemctl stop janus.service >/dev/null 2>&1 || true
  fi
  if command -v service >/dev/null 2>&1; then service janus stop >/dev/null 2>&1 || true; fi
}

case "${1:-all}" in
  all | gstreamer) install_system_deps "${1:-all}" ;;
  *) echo "usage: bench/sfu/install.sh [all|gstreamer]" >&2; exit 2 ;;
esac
log "done"
