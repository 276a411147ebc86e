"""DQN actors wired together on a local Ray with LunarLander-v3."""

from __future__ import annotations

import time

import numpy as np
import pytest
import ray

from soulsai_ray.actors.learner import LearnerActor
from soulsai_ray.actors.replay import ReplayActor
from soulsai_ray.actors.rollout import RolloutActor
from soulsai_ray.actors.weight_client import RETRY_S, WeightClient
from soulsai_ray.actors.weights import WeightStore
from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.config import EnvConfig, TrainConfig
from soulsai_ray.inbound import Limits
from soulsai_ray.models import QNetwork, state_dict_to_numpy
from soulsai_ray.observations import ObsSpec
from soulsai_ray.transitions import TransitionBatch

pytestmark = pytest.mark.usefixtures("ray_local")


def _cfg(**algo) -> TrainConfig:
    base = dict(
        hidden_sizes=[32],
        learning_starts=200,
        batch_size=32,
        buffer_size=5_000,
        publish_every=5,
        publish_min_interval_s=0.0,  # the tests count versions per update
        weight_sync_every=16,
        collect_steps=200,
        push_every=32,
        max_model_lag=1_000,
    )
    base.update(algo)
    return TrainConfig(algo=DQNConfig(**base), env=EnvConfig(id="LunarLander-v3"), seed=7)


@pytest.fixture
def wired(tmp_path, request):
    """Store, replay, 2 rollout actors and a learner; ``request.param``: algo settings."""
    cfg = _cfg(**getattr(request, "param", {}))
    store = WeightStore.options(name="test-weights").remote()
    actors = [
        RolloutActor.options(num_cpus=0).remote(cfg, i, 2, "test-replay", "test-weights")
        for i in range(2)
    ]
    spec = ray.get(actors[0].spec.remote())
    assert (spec.obs, spec.num_actions) == (ObsSpec.vector(8), 4)
    replay = ReplayActor.options(name="test-replay").remote(
        cfg.algo, Limits.for_run(cfg, spec.obs, spec.num_actions), cfg.seed, "test-weights"
    )
    learner = LearnerActor.remote(
        cfg, spec.obs, spec.num_actions, "test-replay", "test-weights", str(tmp_path / "ckpt")
    )
    assert ray.get(learner.ready.remote()) == 0
    yield cfg, store, replay, actors, learner
    for handle in [store, replay, learner, *actors]:
        ray.kill(handle)


COMPILED = dict(
    compile=True, hidden_sizes=[32, 32], layer_norm=True, normalize_obs=True, batch_size=64,
    grad_clip=0.5,
)  # fmt: skip
"""A compiled learner with the Q-network, batch and clipping of tests/unit/test_compiled_step.py:
one graph, so the one of the two suites that runs second finds it in inductor's cache."""


@pytest.mark.parametrize("wired", [COMPILED], indirect=True, ids=["compiled_update"])
def test_learner_gets_data_from_every_actor_and_versions_reach_every_actor(wired):
    """The learner's update compiled in its Ray worker, as the shipped configs run it."""
    cfg, store, replay, actors, learner = wired
    reports = ray.get([a.collect.remote(0) for a in actors])
    assert all(r.env_steps == cfg.algo.collect_steps for r in reports)
    assert all(r.version == 0 for r in reports)
    train = ray.get(learner.train.remote(40))
    assert train.updates == 40 and train.compiled
    assert train.version == 40 // cfg.algo.publish_every
    _wait_for_version(store, train.version)
    before = ray.get(replay.stats.remote())["accepted"]
    reports = ray.get([a.collect.remote(400) for a in actors])
    # weight_sync_every=16 < collect_steps: each actor has picked up the newest version
    assert [r.version for r in reports] == [train.version, train.version]
    assert ray.get([a.flush.remote() for a in actors]) == [0, 0]
    stats = ray.get(replay.stats.remote())
    assert (
        stats["accepted"] - before == sum(r.env_steps for r in reports) - 2 * (cfg.algo.n_step - 1)
        or stats["accepted"] > before
    )
    assert stats["size"] == stats["accepted"]


def test_learner_republishes_above_a_floor_after_a_restart(wired):
    cfg, store, _replay, actors, learner = wired
    ray.get([a.collect.remote(0) for a in actors])
    ray.get([a.flush.remote() for a in actors])
    assert ray.get(learner.republish.remote(41)) == 42
    _wait_for_version(store, 42)
    report = ray.get(learner.train.remote(cfg.algo.publish_every))
    assert report.version == 43  # versions go on above the floor


def test_replay_rejects_stale_batches(wired):
    cfg, _store, replay, actors, learner = wired
    ray.get([a.collect.remote(0) for a in actors])
    ray.get(learner.train.remote(cfg.algo.publish_every * 3))  # learner is at version 3
    ray.get(replay.sample.remote(1, 8, 3))
    n = 10
    batch = TransitionBatch(
        obs=np.zeros((n, 8), np.float32),
        actions=np.zeros(n, np.int64),
        rewards=np.zeros(n, np.float32),
        next_obs=np.zeros((n, 8), np.float32),
        discounts=np.ones(n, np.float32),
        next_masks=np.ones((n, 4), bool),
        versions=np.array([0] * 4 + [3] * 6, np.int64),
    )
    strict_cfg = _cfg(max_model_lag=2)
    strict = ReplayActor.remote(strict_cfg.algo, Limits.for_run(strict_cfg, 8, 4), 0)
    ray.get(strict.sample.remote(1, 8, 3))
    assert ray.get(strict.add.remote(batch, 5, "node-a")) is True
    stats = ray.get(strict.stats.remote())
    assert (stats["accepted"], stats["stale"], stats["accepted_by_node"]) == (6, 4, {"node-a": 6})
    assert stats["lag_sum"] == 0  # the accepted ones are of the learner's version
    bad = TransitionBatch(**{**batch.__dict__, "obs": np.zeros((n, 7), np.float32)})
    assert ray.get(strict.add.remote(bad, 5, "node-b")) is False
    stats = ray.get(strict.stats.remote())
    assert stats["invalid"] == n and stats["rejected_by_reason"] == {"shape": 1}
    assert stats["rejected_by_node"] == {"node-b": 1} and stats["accepted"] == 6
    ray.kill(strict)


def test_a_restarted_learner_skips_a_forged_checkpoint_and_restores_the_good_one(
    wired, tmp_path, forge_checkpoint
):
    cfg, _store, _replay, actors, _learner = wired
    ckpt_dir = tmp_path / "restart-ckpt"
    learner = LearnerActor.options(max_restarts=1).remote(
        cfg, 8, 4, "test-replay", "test-weights", str(ckpt_dir)
    )
    ray.get([a.collect.remote(0) for a in actors])
    ray.get([a.flush.remote() for a in actors])
    assert ray.get(learner.train.remote(cfg.algo.publish_every * 2)).version == 2
    CheckpointManager(ckpt_dir).save(
        "ckpt_good", ray.get(learner.state.remote()), {"updates": 10, "env_steps": 100}, ""
    )
    marker = tmp_path / "marker"
    forge_checkpoint(ckpt_dir / "ckpt_forged", marker)  # newer by its counters
    ray.kill(learner, no_restart=False)
    deadline = time.monotonic() + 60
    while True:
        try:
            version = ray.get(learner.ready.remote(), timeout=10)
            break
        except ray.exceptions.RayActorError:
            assert time.monotonic() < deadline, "the learner did not come back"
            time.sleep(0.2)
    assert version == 2  # the good checkpoint's version, not the forged one's
    assert not marker.exists()
    ray.kill(learner)


def test_the_weight_store_answers_a_waiting_actor_as_soon_as_a_new_version_is_published():
    store = WeightStore.remote()
    ref = [ray.put(np.zeros(3))]
    waiting = store.wait_newer.remote(-1, 30.0)
    assert ray.wait([waiting], timeout=0.5)[0] == []  # nothing published yet: it waits
    start = time.monotonic()
    ray.get(store.publish.remote(4, ref))
    published = time.monotonic()
    assert ray.get(waiting, timeout=5)[0] == 4
    answered = time.monotonic()
    # answered by the publish, not by its 30 s timeout: right after the publish returned. The
    # publish round trip itself is not bounded tightly: on a busy 2-core machine it took 0.6-2 s
    assert answered - published < 1.5 and answered - start < 10.0, (
        published - start,
        answered - published,
    )
    assert ray.get(store.wait_newer.remote(3, 30.0), timeout=5)[0] == 4  # differs: at once
    start = time.monotonic()
    assert ray.get(store.wait_newer.remote(4, 0.3), timeout=5)[0] == 4  # no news: after 0.3 s
    assert time.monotonic() - start >= 0.3
    ray.get(store.publish.remote(2, [ray.put(np.ones(3))]))  # older: ignored
    assert ray.get(store.latest.remote())[0] == 4
    ray.kill(store)


def test_new_weights_reach_a_game_rate_actor_within_a_few_env_steps_and_survive_a_store_restart():
    cfg = _cfg(weight_sync_every=1, collect_steps=10_000, collect_time_s=2.0)
    cfg.env.step_latency_s = 0.05  # 20 steps/s: one env step is 50 ms
    store = WeightStore.options(name="sync-weights", max_restarts=1).remote()
    learner_like = _policy_weights(cfg)
    ray.get(store.publish.remote(0, [ray.put(learner_like)]))
    actor = RolloutActor.options(num_cpus=0).remote(cfg, 0, 1, "sync-replay", "sync-weights")
    replay = ReplayActor.options(name="sync-replay").remote(cfg.algo, Limits.for_run(cfg, 8, 4), 0)
    ray.get(actor.spec.remote())  # constructed
    collects = [actor.collect.remote(0) for _ in range(15)]  # back to back: 30 s of sampling
    time.sleep(0.5)  # it has installed version 0 and samples
    published = {}
    for version in range(1, 6):
        time.sleep(1.6 if version == 4 else 0.6)  # 3 has time to arrive
        if version == 3:  # the store dies and comes back empty; the driver republishes
            ray.kill(store, no_restart=False)
            _wait_for_version(store, -1)
        published[version] = time.time()
        ray.get(store.publish.remote(version, [ray.put(learner_like)]))
    loads: dict[int, float] = {}
    for collect in collects:  # until the call during which version 5 arrived has reported
        loads.update(ray.get(collect, timeout=60).weight_loads)
        if 5 in loads:
            break
    assert set(loads) == {0, 1, 2, 3, 4, 5}, loads
    latency = {v: loads[v] - published[v] for v in published}
    # at most one env step plus the transfer; after the restart, plus the client's longest pause
    # between retries (they double while the store is down, which lasts as long as its restart)
    assert max(latency[v] for v in (1, 2, 4, 5)) < 0.25, latency
    assert latency[3] < RETRY_S[1] + 0.25, latency
    for handle in (actor, replay, store):
        ray.kill(handle)


def _policy_weights(cfg: TrainConfig) -> dict[str, np.ndarray]:
    net = QNetwork(8, 4, cfg.algo.hidden_sizes, cfg.algo.dueling)
    return state_dict_to_numpy(net)


def _wait_for_version(store, version: int) -> None:
    """Waits until the store holds ``version`` (publishes are one-way calls; -1: restarted)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            held = ray.get(store.latest.remote(), timeout=10)[0]
        except ray.exceptions.RayActorError:  # restarting
            held = None
        if held == version:
            return
        assert time.monotonic() < deadline, (held, version)
        time.sleep(0.05)


def test_the_weight_client_hands_over_only_the_newest_version_fetched():
    store = WeightStore.remote()
    client = WeightClient(store)
    assert client.take() is None
    with pytest.raises(TimeoutError):
        client.wait(timeout_s=0.3)  # nothing published
    for version in range(1, 4):
        ray.get(store.publish.remote(version, [ray.put({"w": np.full(2, version)})]))
    deadline = time.monotonic() + 10
    newest = None
    while newest is None or newest[0] != 3:
        newest = client.take() or newest
        assert time.monotonic() < deadline, newest
        time.sleep(0.02)
    np.testing.assert_array_equal(newest[1]["w"], [3, 3])
    assert client.take() is None and client.pop_errors() == []
    ray.kill(store)
    assert _eventually(client.pop_errors, 10)  # the store is gone: reported
    client.close(timeout_s=10)
    assert not client._thread.is_alive()


def _eventually(condition, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            return value
        time.sleep(0.05)
    return value
