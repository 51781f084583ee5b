#!/usr/bin/env bash
# The single test command: lint, unit tests, build, then end-to-end tests that
# drive the real binary on loopback with third-party XMPP clients.
#
# Environment:
#   CONCLAVE_BIN   binary under test (default: target/debug/conclave)
#   TARGET         e2e target: conclave (default) or prosody (reference server)
#   PYTEST_ARGS    extra arguments for pytest (e.g. "-k roster -x")
#   E2E_ONLY=1     skip fmt/clippy/cargo test/build; run only the end-to-end stages
#   SKIP_BENCH_SMOKE=1  skip the smokes of bench/xmpp (tsung) and bench/sfu (sfu-load)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

section() { printf '\n======== %s ========\n' "$*"; }

# What this script needs that it does not install itself, checked before
# anything runs (scripts/install-test-deps.sh installs the rest).
missing=()
for tool in cargo node npm python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${E2E_ONLY:-0}" != 1 ] && command -v cargo >/dev/null 2>&1; then
  cargo fmt --version >/dev/null 2>&1 || missing+=("rustfmt (rustup component add rustfmt)")
  cargo clippy --version >/dev/null 2>&1 || missing+=("clippy (rustup component add clippy)")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  printf 'scripts/test.sh needs: %s\n' "${missing[@]}" >&2
  echo "See README.md, Prerequisites: Rust with rustfmt and clippy, Node.js with npm, Python 3." >&2
  exit 2
fi

scratch=()
cleanup() { [ "${#scratch[@]}" -eq 0 ] || rm -rf "${scratch[@]}"; }
trap cleanup EXIT

if [ "${E2E_ONLY:-0}" != 1 ]; then
  section "cargo fmt --check"
  cargo fmt --all -- --check

  section "cargo clippy"
  cargo clippy --workspace --all-targets -- -D warnings

  # This also builds target/debug/conclave (crates/conclave has
  # integration tests), with the features the whole workspace resolves to.
  # A separate `cargo build -p conclave` would resolve them for one package
  # and rebuild some thirty dependencies for nothing.
  section "cargo test"
  cargo test --workspace

  # The build above ran `npm ci` in web/ (crates/conclave/build.rs).
  section "web: eslint, vitest (the browser meeting library)"
  (cd web && npm run --silent lint && npm test --silent)
fi
if [ -z "${CONCLAVE_BIN:-}" ] && [ ! -x "$ROOT/target/debug/conclave" ]; then
  section "cargo build -p conclave"
  cargo build -p conclave
fi
export CONCLAVE_BIN="${CONCLAVE_BIN:-$ROOT/target/debug/conclave}"
echo "binary under test: $CONCLAVE_BIN"

section "install e2e test dependencies"
scripts/install-test-deps.sh

failed=()

section "e2e: pytest (slixmpp) tests/e2e"
# shellcheck disable=SC2086
if ! tests/.venv/bin/pytest tests/e2e ${PYTEST_ARGS:-}; then
  failed+=("pytest tests/e2e")
fi

section "e2e: node --test tests/node (@xmpp/client WebSocket, Strophe.js BOSH, meetings in Chromium)"
if ! node --test tests/node/; then
  failed+=("node --test tests/node")
fi

section "bench: pytest bench/xmpp (tsung log parsing)"
if ! tests/.venv/bin/pytest -q bench/xmpp/test_tsung.py; then
  failed+=("pytest bench/xmpp")
fi

section "bench: bench/xmpp/run --smoke (tsung against the binary under test)"
if [ "${SKIP_BENCH_SMOKE:-0}" = 1 ]; then
  echo "skipped (SKIP_BENCH_SMOKE=1)"
else
  smoke_out="$(mktemp -d /tmp/conclave-bench-smoke.XXXXXX)"
  scratch+=("$smoke_out")
  if ! bench/xmpp/run --smoke --bin "$CONCLAVE_BIN" --out "$smoke_out"; then
    failed+=("bench/xmpp/run --smoke")
  fi
fi

section "bench: bench/sfu/run --smoke (the bridge under sfu-load, Conclave only)"
if [ "${SKIP_BENCH_SMOKE:-0}" = 1 ]; then
  echo "skipped (SKIP_BENCH_SMOKE=1)"
elif ! bench/sfu/run --smoke; then
  failed+=("bench/sfu/run --smoke")
fi

section "summary"
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "all test stages passed"
