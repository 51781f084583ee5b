"""Fixtures that run the real server binary on loopback.

TARGET=conclave (default) runs target/debug/conclave (or $CONCLAVE_BIN);
TARGET=prosody runs Debian's Prosody as a reference server, to validate the tests.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import harness  # noqa: E402

TURN_SECRET = "e2e-turn-secret-0123456789"

# Servers alive right now, so a failing test can show their logs.
_LIVE: list[harness.ServerBase] = []



def pytest_report_header(config):
    where = harness.conclave_bin() if harness.TARGET == "conclave" else "prosody (reference server)"
    return f"e2e target: {harness.TARGET} ({where})"


def pytest_collection_modifyitems(config, items):
    if harness.TARGET != "conclave":
        skip = pytest.mark.skip(reason=f"Conclave-specific; not applicable to TARGET={harness.TARGET}")
        for item in items:
            if "conclave_only" in item.keywords:
                item.add_marker(skip)


def _start(overrides: dict | None, name: str, start: bool = True, components: dict | None = None) -> harness.ServerBase:
    try:
        srv = harness.make_server(overrides, name, components)
    except harness.Unsupported as e:
        pytest.skip(str(e))
    _LIVE.append(srv)
    if start:
        try:
            srv.start()
        except Exception:
            _LIVE.remove(srv)
            srv.cleanup()
            raise
    return srv


def _finish(srv: harness.ServerBase) -> None:
    if srv in _LIVE:
        _LIVE.remove(srv)
    srv.cleanup()


@pytest.fixture(scope="module")
def server():
    """One server per test module, default config plus a TURN secret."""
    srv = _start({"turn.secret": TURN_SECRET, "registration.allow": True}, "module-server")
    yield srv
    _finish(srv)


@pytest.fixture
def server_factory():
    """Factory for per-test servers with config overrides (Conclave key names).

    make(overrides={"limits.max_stanza_bytes": 10000}, start=True) -> server
    A key that the reference target cannot express skips the test.
    components={"bot.localhost": "secret"} accepts XEP-0114 components.
    """
    made: list[harness.ServerBase] = []

    def make(overrides: dict | None = None, start: bool = True, name: str = "test-server", components: dict | None = None):
        srv = _start(overrides, name, start, components)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        _finish(srv)


@pytest.fixture(autouse=True)
def _log_marks(request):
    """Remember where each live server's log stood when the test began."""
    request.node._log_marks = {id(s): s.log_size() for s in _LIVE}
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when in ("setup", "call"):
        marks = getattr(item, "_log_marks", {})
        for srv in list(_LIVE):
            since = marks.get(id(srv), 0)
            rep.sections.append(
                (f"{srv.kind} [{srv.name}] log ({srv.tmp})", srv.log_tail(since=since))
            )


def pytest_sessionfinish(session, exitstatus):
    for srv in list(_LIVE):
        _finish(srv)
