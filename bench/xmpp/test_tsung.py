"""The bench's tsung log parsing (run by scripts/test.sh with the e2e venv's pytest)."""

from tsung import Block, deliveries, split_stale, TsungLog


def blocks(*counts: tuple[float, int]) -> list[Block]:
    return [Block(t, {"xmpp_msg_latency": n}) for t, n in counts]


def test_stale_sample_at_login_is_left_out():
    # The run's first interval ends at t=100 (so it began at 99). A sample of
    # 15 s that arrived by t=100 was sent by t=85: before the run.
    own, stale = split_stale([15000.0, 0.5, 2.0, 1.0, 3.0], blocks((100, 2), (101, 3)))
    assert stale == [15000.0]
    assert own == [0.5, 2.0, 1.0, 3.0]


def test_long_latency_of_this_run_is_kept():
    # 20 s of latency arriving 31 s into the run: sent 11 s in, so it counts.
    own, stale = split_stale([1.0, 20000.0], blocks((100, 1), (130, 1)))
    assert stale == [] and own == [1.0, 20000.0]


def test_samples_past_the_last_dump_are_kept():
    own, stale = split_stale([1.0, 90000.0], blocks((100, 1)))
    assert stale == [] and own == [1.0, 90000.0]


def test_deliveries_counts_only_this_runs_messages():
    tl = TsungLog(blocks((100, 1), (101, 2)), {"xmpp_msg_latency": 3.0})
    d = deliveries(tl, {"xmpp_msg_latency": [40000.0, 1.0, 3.0]})
    assert d["received"] == 2
    assert d["latency"]["max_ms"] == 3.0 and d["latency"]["n"] == 2
    assert d["stale_deliveries"] == {"n": 1, "max_ms": 40000.0}
