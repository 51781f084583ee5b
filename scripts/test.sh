#!/usr/bin/env bash
# The single test command: lint, unit tests, build, then end-to-end tests that
# drive the real binary on loopback with third-party XMPP clients.
#
# Environment:
#   CONCLAVE_BIN   binary under test (default: target/debug/conclave)
#   TARGET         e2e target: conclave (default) or prosody (reference server)
#   PYTEST_ARGS    extra arguments for pytest (e.g. "-k roster -x")
#   E2E_ONLY=1     skip fmt/clippy/cargo test/build; run only the end-to-end stages
#   SKIP_BENCH_SMOKE=1  skip the tsung smoke of bench/xmpp
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

section() { printf '\n======== %s ========\n' "$*"; }

if [ "${E2E_ONLY:-0}" != 1 ]; then
  section "cargo fmt --check"
  cargo fmt --all -- --check

  section "cargo clippy"
  cargo clippy --workspace --all-targets -- -D warnings

  section "cargo test"
  cargo test --workspace

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

section "e2e: node --test tests/node (@xmpp/client WebSocket, Strophe.js BOSH)"
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
elif ! bench/xmpp/run --smoke --bin "$CONCLAVE_BIN" --out "$(mktemp -d /tmp/conclave-bench-smoke.XXXXXX)"; then
  failed+=("bench/xmpp/run --smoke")
fi

section "summary"
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "all test stages passed"
