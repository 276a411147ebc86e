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


def test_dqn_and_ppo_loops_write_the_same_scalars_on_ray_and_in_one_process():
    from soulsai_ray import metric_names as mn
    from soulsai_ray.loops.dqn_books import IntervalStats
    from soulsai_ray.loops.scalars import dqn_console, dqn_scalars, ppo_console, ppo_scalars

    iv = IntervalStats(start=10.0, env_steps=400, updates=100, losses=[1.0, 3.0], epsilons=[0.5])
    counters = RunCounters(env_steps=5000, updates=100)
    scalars = dqn_scalars(iv, DQNConfig(), counters, now=12.0)
    assert all(mn.is_known(name) for name in scalars)
    assert scalars[mn.TRAIN_LOSS] == 2.0 and scalars[mn.TRAIN_Q_MEAN] is None
    assert scalars[mn.PERF_ENV_STEPS_PER_S] == 200.0 and scalars[mn.PERF_UPDATES_PER_S] == 50.0
    assert dqn_console(scalars, counters) == {
        "eps": 0.5,
        "upd": 100,
        "sps": 200.0,
        "ups": 50.0,
        "loss": 2.0,
    }
    metrics = {"policy_loss": 0.1, "approx_kl": 0.01, "lr": 3e-4, "samples": 2048.0}
    scalars = ppo_scalars(metrics, env_steps_per_s=900.0, update_s=0.5, workers=2, iterations=7)
    assert all(mn.is_known(name) for name in scalars)
    assert scalars[mn.TRAIN_POLICY_LOSS] == 0.1 and scalars[mn.TRAIN_ENTROPY] is None
    assert scalars[mn.PROGRESS_ITERATIONS] == 7 and scalars[mn.DIST_ITERATION_WORKERS] == 2
    assert ppo_console(scalars) == {"it": 7, "workers": 2, "sps": 900.0, "kl": 0.01, "ev": None}
