"""Driver-side bookkeeping of the loops that needs no Ray cluster."""

from __future__ import annotations

import resource
import time

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.config import ClusterConfig, EnvConfig, TrainConfig
from soulsai_ray.loops.common import RunCounters
from soulsai_ray.loops.dqn_books import ReplayCounts
from soulsai_ray.loops.fleet import RolloutFleet


def _stats(incarnation: str, accepted: int, nodes: dict[str, int], **rest) -> dict:
    return {
        "incarnation": incarnation,
        "size": accepted,
        "accepted": accepted,
        "stale": rest.get("stale", 0),
        "invalid": rest.get("invalid", 0),
        "lag_sum": rest.get("lag_sum", 0),
        "accepted_by_node": nodes,
        "rejected_by_reason": rest.get("by_reason", {}),
        "rejected_by_node": rest.get("by_node", {}),
    }


def test_replay_counts_survive_replay_restarts_and_resumes():
    counters = RunCounters(samples_accepted=1000, samples_stale=5, model_lag_sum=30)
    counts = ReplayCounts(counters)  # a resumed run: earlier counts are the base
    deltas = counts.update(_stats("a", 100, {"n1": 100}, stale=2, lag_sum=7))
    assert deltas["accepted_by_node"] == {"n1": 100}
    assert (counters.samples_accepted, counters.samples_stale, counters.model_lag_sum) == (
        1100,
        7,
        37,
    )
    deltas = counts.update(
        _stats("a", 150, {"n1": 120, "n2": 30}, by_reason={"obs": 2}, by_node={"n2": 2})
    )
    assert deltas == {
        "accepted_by_node": {"n1": 20, "n2": 30},
        "rejected_by_reason": {"obs": 2},
        "rejected_by_node": {"n2": 2},
    }
    # replay restarted: it counts from 0 again, what "a" reported is kept
    deltas = counts.update(_stats("b", 10, {"n2": 10}, by_reason={"obs": 1}, by_node={"n2": 1}))
    assert deltas["accepted_by_node"] == {"n2": 10}
    assert deltas["rejected_by_reason"] == {"obs": 1} and deltas["rejected_by_node"] == {"n2": 1}
    assert counters.samples_accepted == counters.model_lag_samples == 1000 + 150 + 10
    assert counts.incarnation == "b"


def test_the_fleet_sleeps_when_nothing_is_in_flight():
    cfg = TrainConfig(algo=DQNConfig(), env=EnvConfig(), cluster=ClusterConfig())
    fleet = RolloutFleet(cfg, make_actor=lambda options, index: None)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    for _ in range(10):
        assert fleet.poll(timeout_s=0.1) == ([], [])
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert time.monotonic() - start >= 1.0 and cpu < 0.1


def test_stale_samples_and_rejected_batches_are_written_under_their_own_names():
    counters = RunCounters(samples_stale=5, samples_invalid=3, batches_rejected={"obs": 2})
    scalars = counters.scalars()
    assert scalars["dist/samples_stale"] == 5 and scalars["dist/samples_invalid"] == 3
    assert scalars["dist/rejected/obs"] == 2
    assert not [name for name in scalars if "samples_rejected" in name]
