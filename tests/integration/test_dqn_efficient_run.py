"""``algo=dqn_efficient``'s switches through Ray on a SoulsGym-shaped env: resets on schedule,
the n-step schedule reaching the rollout actors' transitions, and the observation statistics
shipped with the published weights and saved in the checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ray
from run_configs import fake_souls, run_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.checkpoint_folder import load_checkpoint
from soulsai_ray.config import EnvConfig
from soulsai_ray.experiment import build_experiment

pytestmark = pytest.mark.usefixtures("ray_local")

GAMMA = 0.9
FLOOR_VERSIONS_PER_S = 4.5  # 4 a second at publish_min_interval_s=0.25, plus rounding at the ends


def test_every_switch_works_through_the_actors(tmp_path: Path):
    algo = DQNConfig(
        hidden_sizes=[32],
        gamma=GAMMA,
        learning_starts=300,
        batch_size=32,
        replay_ratio=64,  # 2 updates per env step
        layer_norm=True,
        normalize_obs=True,
        reset_every_updates=300,
        reset_keep=0.5,
        n_step_start=6,
        n_step=2,
        n_step_anneal_steps=1200,
        collect_steps=64,
    )
    cfg = run_config(algo, fake_souls(), steps=3000, save_replay=True, log_every_s=0.2)
    experiment = build_experiment(cfg, tmp_path)
    loop = experiment.loop
    try:
        summary = experiment.run()
        version, refs = ray.get(loop.weight_store.latest.remote())
        published = ray.get(refs[0])
    finally:
        loop.close()
    assert summary["exit_status"] == 0 and summary["counters"]["batches_rejected"] == {}
    assert summary["updates"] >= 3 * 300  # at least 3 resets happened

    payload, _ = load_checkpoint(Path(summary["checkpoint"]))
    q_net = payload["learner"]["q_net"]
    count = float(q_net["normalizer.count"])
    assert count == payload["learner"]["updates"] * 32  # every training batch was seen
    # the published weights carry the statistics (to within the updates since the last publish)
    assert 0 < float(published["normalizer.count"]) <= count
    np.testing.assert_array_equal(
        published["normalizer.mean"].shape, q_net["normalizer.mean"].shape
    )
    assert any(".1.weight" in key for key in q_net)  # the LayerNorm after the first Linear

    # transitions of 6 steps early on and of 2 steps once the schedule has ended
    discounts = np.asarray(payload["replay"]["buffer"]["discounts"])
    assert np.isclose(discounts, GAMMA**6).any() and np.isclose(discounts, GAMMA**2).any()

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    resets = [e.value for e in events.Scalars("train/resets")]
    n_steps = [e.value for e in events.Scalars("train/n_step")]
    assert resets[-1] >= 3 and resets == sorted(resets)
    assert n_steps[0] > n_steps[-1] == 2


@pytest.mark.parametrize("floor_s", [0.25, 0.0], ids=["publish_floor", "no_floor"])
def test_a_learner_far_faster_than_the_games_keeps_their_samples(tmp_path: Path, floor_s):
    """Many updates per env step on slow envs, with the full-speed sync setting (64 steps, over
    3 s at 20 steps/s): the learner publishes at most 4 versions a second and actors install
    new weights at least every 0.5 s, so samples stay within ``max_model_lag``. Without the
    floor the same lag bound is a few milliseconds and replay drops most of the games' samples."""
    algo = DQNConfig(
        hidden_sizes=[16],
        batch_size=16,
        replay_ratio=512,  # 32 updates per env step: the learner runs as fast as it can
        learning_starts=100,
        publish_every=4,
        publish_min_interval_s=floor_s,
        max_model_lag=8,  # 2 s of publications with the floor
        weight_sync_every=64,  # weight_sync_max_s (0.5 s) comes first at 20 steps/s
        push_every=16,
        collect_steps=64,
        collect_time_s=2.0,
        ratio_slack_steps=None,
    )
    env = EnvConfig(id="CartPole-v1", step_latency_s=0.05)  # 20 steps/s per actor
    cfg = run_config(algo, env, steps=300)
    with build_experiment(cfg, tmp_path) as experiment:
        summary = experiment.run()
    counters = summary["counters"]
    stale = counters["samples_stale"] / summary["env_steps"]
    versions_per_s = counters["weight_version"] / summary["wall_s"]
    # the learner runs far ahead of 40 env steps/s (150 to 400 updates/s on 2 busy cores): one
    # version every publish_every updates would come faster than the floor's 4 a second
    unfloored_per_s = summary["updates"] / algo.publish_every / summary["wall_s"]
    assert unfloored_per_s > FLOOR_VERSIONS_PER_S, (summary["updates"], summary["wall_s"])
    print(f"{versions_per_s:.1f} versions/s, {stale:.0%} of the samples dropped as stale")
    if floor_s:
        assert versions_per_s <= FLOOR_VERSIONS_PER_S, versions_per_s
        assert stale < 0.1, counters
    else:
        # every publish_every-th update publishes, whatever the machine's speed
        published = counters["weight_version"] * algo.publish_every
        assert published >= 0.8 * summary["updates"], (counters, summary["updates"])
        assert versions_per_s > FLOOR_VERSIONS_PER_S, versions_per_s
        assert stale > 0.5, counters
