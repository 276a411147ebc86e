"""In-flight bookkeeping, outage accounting, stall deadlines and the replay-ratio controller."""

from __future__ import annotations

import random

import pytest

from soulsai_ray.calls import ActorHealth, InFlight, NodeMembership, StallWatch
from soulsai_ray.replay_ratio import ReplayRatio


def test_in_flight_tracks_calls_per_actor_and_drops_a_killed_actor():
    calls = InFlight(clock=lambda: 5.0)
    calls.submit(0, "a")
    calls.submit(0, "b", extra="batch-b")
    calls.submit(1, "c")
    assert calls.count(0) == 2 and calls.count(1) == 1 and calls.count(2) == 0
    assert calls.keys() == {0, 1} and len(calls) == 3
    call = calls.pop("b")
    assert call.key == 0 and call.extra == "batch-b" and call.submitted_at == 5.0
    assert calls.pop("b") is None  # a result seen twice is handled once
    assert calls.drop(0) == ["a"]
    assert calls.pop("a") is None and calls.refs() == ["c"]


def test_in_flight_random_operations_keep_counts_consistent():
    rng = random.Random(7)
    calls, model = InFlight(), {}
    for step in range(2000):
        op = rng.random()
        if op < 0.5:
            key = rng.randrange(4)
            calls.submit(key, step)
            model[step] = key
        elif op < 0.85 and model:
            ref = rng.choice(list(model))
            assert calls.pop(ref).key == model.pop(ref)
        else:
            key = rng.randrange(4)
            assert sorted(calls.drop(key)) == sorted(r for r, k in model.items() if k == key)
            model = {r: k for r, k in model.items() if k != key}
        for key in range(4):
            assert calls.count(key) == sum(k == key for k in model.values())


def test_health_counts_one_outage_per_failure_streak():
    health = ActorHealth()
    assert health.failed(0) and not health.failed(0)  # the calls of one outage count once
    assert not health.is_up(0) and health.num_up(range(2)) == 1
    health.succeeded(0)
    assert health.failed(0) and health.outages == 2


def test_health_says_how_long_each_outage_lasted():
    now = [100.0]
    health = ActorHealth(clock=lambda: now[0])
    assert health.succeeded(0) is None  # never down
    health.failed(0)
    now[0] = 104.0
    health.failed(0)  # the same outage: its start stays
    now[0] = 130.5
    assert health.succeeded(0) == 30.5 and health.succeeded(0) is None


def test_stall_watch_flags_long_env_calls_and_unanswered_heartbeats():
    watch = StallWatch(timeout_s=10.0)
    watch.report(0, busy_s=3.0, now=100.0)
    watch.sent(1, now=100.0)
    assert watch.stalled(105.0) == []
    assert watch.awaiting(1) and not watch.awaiting(0)
    watch.report(0, busy_s=10.5, now=108.0)
    assert watch.stalled(108.0) == [0]
    assert watch.stalled(110.5) == [0, 1]  # heartbeat to 1 unanswered for more than 10 s
    watch.forget(0)
    watch.forget(1)
    assert watch.stalled(200.0) == []


def test_stall_watch_idle_actor_is_never_stalled_and_off_means_off():
    watch = StallWatch(timeout_s=1.0)
    watch.report(0, busy_s=0.0, now=0.0)
    assert watch.stalled(1000.0) == []
    off = StallWatch(timeout_s=None)
    off.sent(0, now=0.0)
    assert not off.enabled and off.stalled(1e9) == []


def _ratio(slack: int | None = 2000) -> ReplayRatio:
    return ReplayRatio(replay_ratio=64.0, batch_size=64, learning_starts=1000, slack_steps=slack)


def test_ratio_allows_one_update_per_step_after_learning_starts():
    ratio = _ratio()
    ratio.reset(0)
    ratio.inserted(999)
    assert ratio.allowed_updates() == 0
    ratio.inserted(501)
    assert ratio.allowed_updates() == 500
    ratio.learned(500)
    assert ratio.allowed_updates() == 0 and not ratio.sampling_paused()


def test_ratio_pauses_sampling_beyond_the_slack_and_never_with_null_slack():
    ratio = _ratio()
    ratio.reset(0)
    ratio.inserted(3001)
    assert ratio.sampling_paused()
    ratio.learned(10)
    assert not ratio.sampling_paused()
    free = _ratio(slack=None)
    free.reset(0)
    free.inserted(10**9)
    assert not free.sampling_paused()


def test_ratio_after_a_buffer_reset_samples_again_instead_of_deadlocking():
    """The resume-without-replay case: lifetime totals lead by far, the new buffer is empty."""
    ratio = _ratio()
    ratio.reset(0)
    ratio.inserted(33_536)
    ratio.learned(1_000)  # learning fell far behind, then replay restarted empty
    assert ratio.sampling_paused()
    ratio.reset(held=0)
    assert not ratio.sampling_paused() and ratio.allowed_updates() == 0
    ratio.inserted(1_200)
    assert ratio.allowed_updates() == 200  # learning resumes once the new buffer fills


@pytest.mark.parametrize("held", [0, 500, 1000, 50_000])
def test_ratio_restored_buffer_neither_pauses_nor_bursts(held):
    ratio = _ratio()
    ratio.reset(held)
    assert not ratio.sampling_paused()
    assert ratio.allowed_updates() == 0
    ratio.inserted(1000 - min(held, 1000) + 10)
    assert ratio.allowed_updates() == 10


def test_bounded_counts_fold_departed_nodes_into_other_and_keep_the_total():
    from soulsai_ray.counts import OTHER, BoundedCounts

    counts = BoundedCounts(limit=4)
    rng = random.Random(3)
    total = 0
    for i in range(10_000):  # PCs rebooting: a new node id every few samples
        amount = rng.randrange(1, 5)
        counts.add(f"node-{i // 7}", amount)
        total += amount
        assert len(counts.as_dict()) <= 4
    assert counts.total() == total
    assert OTHER in counts.as_dict() and "node-1428" in counts.as_dict()


def test_elastic_epsilons_stay_spread_as_the_fleet_grows():
    from soulsai_ray.algos.exploration import elastic_apex_epsilon, spread_fraction

    assert [spread_fraction(i) for i in range(6)] == [0.0, 1.0, 0.5, 0.25, 0.75, 0.125]
    for size in range(2, 40):
        fractions = sorted(spread_fraction(i) for i in range(size))
        assert fractions[0] == 0.0 and fractions[-1] == 1.0
        gaps = [b - a for a, b in zip(fractions, fractions[1:], strict=False)]
        assert max(gaps) <= 2.0 / (size - 1) + 1e-12  # no region of the range left empty
    eps = [elastic_apex_epsilon(i, 0.4, 7.0) for i in range(8)]
    assert eps[0] == pytest.approx(0.4) and eps[1] == pytest.approx(0.4**8)
    assert len(set(eps)) == 8  # a joining actor never copies another's epsilon


def test_node_membership_counts_joins_and_losses_after_the_first_listing():
    nodes = NodeMembership()
    assert nodes.update({"a": "10.0.0.1", "b": "10.0.0.2"}) == ([], [])  # the baseline
    assert (nodes.joined, nodes.lost, nodes.num_alive) == (0, 0, 2)
    assert nodes.update({"a": "10.0.0.1"}) == ([], ["10.0.0.2"])
    # the PC rejoins under a new node id, and a new PC arrives
    assert nodes.update({"a": "10.0.0.1", "c": "10.0.0.2", "d": "10.0.0.3"}) == (
        ["10.0.0.2", "10.0.0.3"],
        [],
    )
    assert (nodes.joined, nodes.lost, nodes.num_alive) == (2, 1, 3)


def test_dropped_calls_keep_what_travelled_with_them():
    calls = InFlight()
    calls.submit(0, "a", extra="evaluation")
    calls.submit(1, "b", extra="batch")
    calls.submit(0, "c")
    dropped = calls.drop_calls(0)
    assert [(ref, call.key, call.extra) for ref, call in dropped] == [
        ("a", 0, "evaluation"),
        ("c", 0, None),
    ]
    assert calls.refs() == ["b"] and calls.drop_calls(0) == []
