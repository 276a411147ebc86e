"""check_steps rejects every malformed StepBatch with its reason; a frames ReplayStore counts
accepted, stale and rejected steps as a transitions store counts transitions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.inbound import REASONS, Limits, check_steps
from soulsai_ray.observations import ObsSpec
from soulsai_ray.replay_store import ReplayStore
from soulsai_ray.steps import StepBatch, StepRecorder
from soulsai_ray.transitions import EnvStep

STACK, ACTIONS, VERSION = 2, 3, 5
N = 1
LIMITS = Limits(ObsSpec.image(4, 5, 2 * STACK, high=200), ACTIONS, 1e6, 10.0, 16, STACK, N)


def good_steps(rows: int = 6, seed: int = 0) -> StepBatch:
    """Two episodes' steps of 4x5x2 frames stacked 2 deep; versions VERSION and VERSION - 1."""
    rng = np.random.default_rng(seed)
    recorder = StepRecorder(ACTIONS, N, STACK)
    obs = rng.integers(0, 201, LIMITS.obs.shape, np.uint8)
    for t in range(rows):
        next_obs = rng.integers(0, 201, LIMITS.obs.shape, np.uint8)
        ends = t == rows // 2
        recorder.push(EnvStep(obs, t % ACTIONS, -1.5, next_obs, ends, False, None, VERSION - t % 2))
        obs = next_obs
    return recorder.pop()


def _set(name: str, value: Callable[[StepBatch], object]) -> Callable[[StepBatch], StepBatch]:
    return lambda b: dataclasses.replace(b, **{name: value(b)})


def _poke(name: str, index: object, value: object) -> Callable[[StepBatch], StepBatch]:
    def fault(batch: StepBatch) -> StepBatch:
        array = getattr(batch, name).copy()
        array[index] = value
        return dataclasses.replace(batch, **{name: array})

    return fault


FAULTS: dict[str, tuple[str, Callable[[StepBatch], object]]] = {
    "not a batch": ("type", lambda b: {"actions": b.actions}),
    "negative stream": ("type", _set("stream", lambda b: -1)),
    "stream beyond 63 bits": ("type", _set("stream", lambda b: 2**63)),
    "float seq": ("type", _set("seq", lambda b: 1.0)),
    "int continues": ("type", _set("continues", lambda b: 1)),
    "list actions": ("type", _set("actions", lambda b: b.actions.tolist())),
    "int32 actions": ("dtype", _set("actions", lambda b: b.actions.astype(np.int32))),
    "float32 rewards": ("dtype", _set("rewards", lambda b: b.rewards.astype(np.float32))),
    "float frames": ("dtype", _set("next_frames", lambda b: b.next_frames.astype(np.float32))),
    "int starts": ("dtype", _set("starts", lambda b: b.starts.astype(np.int8))),
    "int32 horizons": ("dtype", _set("horizons", lambda b: b.horizons.astype(np.int32))),
    "no horizons": ("shape", _set("horizons", lambda b: b.horizons[:0])),
    "stacked next frames": (
        "shape",
        _set("next_frames", lambda b: np.zeros((len(b), *LIMITS.obs.shape), np.uint8)),
    ),
    "first_obs of one frame": ("shape", _set("first_obs", lambda b: b.first_obs[:, :1])),
    "rows disagree": ("shape", _set("terminated", lambda b: b.terminated[:-1])),
    "mask of 2 actions": ("shape", _set("next_masks", lambda b: b.next_masks[:, :2])),
    "first step no start": ("shape", _poke("starts", 0, False)),
    "a start without frames": ("shape", _poke("starts", 2, True)),
    "frames without a start": ("shape", _set("first_obs", lambda b: b.first_obs[:1])),
    "too many rows": ("rows", lambda b: good_steps(LIMITS.max_rows + 1)),
    "empty": ("rows", lambda b: _empty(b)),
    "nan reward": ("non_finite", _poke("rewards", 1, np.nan)),
    "reward beyond the bound": ("reward", _poke("rewards", 1, 10.5)),
    "pixel above high": ("obs", _poke("next_frames", (1, 0, 0, 0), 201)),
    "first pixel above high": ("obs", _poke("first_obs", (0, 0, 0, 0, 0), 255)),
    "action out of range": ("action", _poke("actions", 1, ACTIONS)),
    "negative action": ("action", _poke("actions", 1, -1)),
    "future version": ("version", _poke("versions", 1, VERSION + 1)),
    "negative version": ("version", _poke("versions", 1, -1)),
    "bootstrap without a valid action": ("mask", _poke("next_masks", 1, False)),
    "n of 0": ("horizon", _poke("horizons", 1, 0)),
    "n above the run's largest": ("horizon", _poke("horizons", 1, N + 1)),
}


def _empty(batch: StepBatch) -> StepBatch:
    fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    arrays = {k: v[:0] for k, v in fields.items() if isinstance(v, np.ndarray)}
    return dataclasses.replace(batch, **arrays)


def test_good_steps_pass_and_an_ended_step_needs_no_valid_next_action():
    batch = good_steps()
    assert check_steps(batch, LIMITS, VERSION) is None
    assert check_steps(batch, LIMITS, None) is None
    assert batch.starts.tolist() == [True, False, False, False, True, False]
    ended = _poke("next_masks", 3, False)(batch)  # step 3 terminated its episode
    assert check_steps(ended, LIMITS, VERSION) is None
    at_bound = _poke("rewards", 0, -10.0)(batch)  # one step's reward, not an n-step sum
    assert check_steps(at_bound, LIMITS, VERSION) is None


@pytest.mark.parametrize(("name", "reason"), [(k, v[0]) for k, v in FAULTS.items()])
def test_every_malformed_step_batch_is_rejected_with_its_reason(name, reason):
    batch = FAULTS[name][1](good_steps())
    rejection = check_steps(batch, LIMITS, VERSION)
    assert rejection is not None, name
    assert rejection.reason == reason and reason in REASONS, (name, rejection)
    assert rejection.detail


def test_limits_of_a_frames_run_bound_one_steps_reward_and_a_push_of_steps():
    from soulsai_ray.config import EnvConfig, TrainConfig

    env = EnvConfig(max_abs_reward=3.0, frame_stack=STACK)
    frames = DQNConfig(replay_layout="frames", push_every=16, n_step=4, n_step_start=6)
    limits = Limits.for_run(TrainConfig(algo=frames, env=env), LIMITS.obs, ACTIONS)
    assert (limits.max_rows, limits.max_abs_reward, limits.max_n) == (32, 3.0, 6)
    assert limits.frame == ObsSpec.image(4, 5, 2, high=200)
    vectors = EnvConfig(max_abs_reward=3.0)
    transitions = Limits.for_run(TrainConfig(algo=DQNConfig(n_step=4), env=vectors), 8, ACTIONS)
    assert transitions.max_abs_reward == 12.0
    with pytest.raises(ValueError, match="not a stack of 3 image frames"):
        Limits(LIMITS.obs, ACTIONS, 1.0, 1.0, 16, frame_stack=3)


def _frames_store(max_model_lag: int = 1) -> ReplayStore:
    cfg = DQNConfig(
        replay_layout="frames", buffer_size=100, learning_starts=1, batch_size=4, n_step=N
    )
    store = ReplayStore(dataclasses.replace(cfg, max_model_lag=max_model_lag), LIMITS, 0)
    store.observe_version(VERSION)
    return store


def test_a_frames_store_keeps_fresh_steps_and_counts_stale_and_rejected_ones_per_step():
    store = _frames_store(max_model_lag=0)  # versions VERSION - 1 are stale
    assert store.add(good_steps(), 0, "node-a") is True
    stats = store.stats()
    assert (stats["accepted"], stats["stale"], stats["lag_sum"]) == (3, 3, 0)
    assert stats["size"] == len(store) == 3 and stats["accepted_by_node"] == {"node-a": 3}
    assert store.sample(1, 4, VERSION) == []  # 3 transitions: fewer than a batch
    sampled = store.sample(2, 3, VERSION)
    assert len(sampled) == 2 and set(sampled[0].batch.versions.tolist()) == {VERSION}
    assert sampled[0].batch.obs.shape == (3, *LIMITS.obs.shape)
    bad = FAULTS["pixel above high"][1](good_steps(seed=1))
    assert store.add(bad, 1, "node-b") is False
    stats = store.stats()
    assert stats["rejected_by_reason"] == {"obs": 1} and stats["rejected_by_node"] == {"node-b": 1}
    assert stats["invalid"] == 6 and stats["accepted"] == 3
    assert store.add(good_steps(seed=2), 0, "node-a")  # a transitions batch would not pass
    assert store.stats()["rejected_by_reason"] == {"obs": 1}


def test_a_frames_store_lag_sum_counts_each_kept_steps_lag():
    store = _frames_store(max_model_lag=1)
    store.add(good_steps(), 0)
    assert (store.accepted, store.stale, store.lag_sum) == (6, 0, 3)
