"""FrameReplay (each frame stored once) against NStepAccumulator + ReplayBuffer (obs and next_obs
stored per transition) on random interleaved episodes."""

from __future__ import annotations

import numpy as np
import pytest

from soulsai_ray.frame_replay import FrameReplay
from soulsai_ray.observations import ObsSpec
from soulsai_ray.replay import ReplayBuffer
from soulsai_ray.transitions import EnvStep, NStepAccumulator, TransitionBatch

FRAME = ObsSpec.image(5, 6, 2)
ACTIONS = 4
FIELDS = ("obs", "actions", "rewards", "next_obs", "discounts", "next_masks", "versions")


class _Episodes:
    """Random episodes of several streams, pushed step by step, interleaved, into both replays."""

    def __init__(self, n: int, stack: int, capacity: int, seed: int, streams: int = 3) -> None:
        self.rng = np.random.default_rng(seed)
        self.n, self.stack, self.gamma = n, stack, 0.9
        spec = ObsSpec.image(5, 6, 2 * stack)
        self.naive = ReplayBuffer(10_000, spec, ACTIONS)
        self.frames = FrameReplay(capacity, FRAME, ACTIONS, n, self.gamma, stack, seed)
        self.accumulators = [NStepAccumulator(n, self.gamma, ACTIONS) for _ in range(streams)]
        self.episodes: list[list[np.ndarray]] = [[] for _ in range(streams)]
        self.left = [0] * streams
        self.step = 0

    def run(self, steps: int) -> None:
        for _ in range(steps):
            stream = int(self.rng.integers(len(self.accumulators)))
            if self.rng.random() < 0.02 and self.episodes[stream]:  # an env crash
                self.accumulators[stream].reset()
                self.frames.abandon(stream)
                self.episodes[stream] = []
            self._step(stream)

    def _step(self, stream: int) -> None:
        rng, frames = self.rng, self.episodes[stream]
        if not frames:
            frames.append(self._frame())
            self.left[stream] = int(rng.integers(1, 12))
        self.left[stream] -= 1
        ends = self.left[stream] == 0
        terminated = ends and rng.random() < 0.5
        frames.append(self._frame())
        t = len(frames) - 2
        mask = rng.random(ACTIONS) < 0.7
        mask[rng.integers(ACTIONS)] = True
        args = (int(rng.integers(ACTIONS)), float(rng.normal()))
        flags = (terminated, ends and not terminated, mask, self.step)
        self.step += 1
        acc = self.accumulators[stream]
        acc.push(EnvStep(self._stacked(frames, t), *args, self._stacked(frames, t + 1), *flags))
        self.frames.push(stream, EnvStep(frames[t], *args, frames[t + 1], *flags))
        batch = acc.pop()
        if batch is not None:
            self.naive.add(batch)
        if ends:
            self.episodes[stream] = []

    def _frame(self) -> np.ndarray:
        return self.rng.integers(0, 256, FRAME.shape, dtype=np.uint8)

    def _stacked(self, frames: list[np.ndarray], t: int) -> np.ndarray:
        picked = [frames[max(t - i, 0)] for i in reversed(range(self.stack))]
        return np.concatenate(picked, axis=-1)

    def naive_transitions(self) -> TransitionBatch:
        stored = self.naive.state_dict()
        return TransitionBatch(**{name: stored[name] for name in FIELDS})

    def frame_transitions(self) -> TransitionBatch:
        ring = self.frames.ring
        live = np.arange(ring.written)
        return ring.transitions(live[ring.valid(live)])


def _by_version(batch: TransitionBatch) -> dict[int, int]:
    return {int(v): i for i, v in enumerate(batch.versions)}


def _assert_same(frame: TransitionBatch, naive: TransitionBatch, rows: list[int]) -> None:
    for name in FIELDS:
        expected = getattr(naive, name)[rows]
        actual = getattr(frame, name)
        assert actual.dtype == expected.dtype, name
        np.testing.assert_array_equal(actual, expected, err_msg=name)


@pytest.mark.parametrize(("n", "stack"), [(1, 1), (3, 1), (3, 4), (5, 2)])
def test_every_transition_equals_the_naive_replays_field_for_field(n, stack):
    episodes = _Episodes(n, stack, capacity=10_000, seed=n * 10 + stack)
    episodes.run(600)
    naive, frame = episodes.naive_transitions(), episodes.frame_transitions()
    assert len(frame) == len(naive) > 400  # the same transitions: complete ones, crashes lost
    order = np.argsort(frame.versions)
    frame = frame.select(order)
    rows = [_by_version(naive)[int(v)] for v in frame.versions]
    _assert_same(frame, naive, rows)
    assert set(np.unique(frame.discounts)) >= {0.0, np.float32(episodes.gamma**n)}


def test_overwritten_frames_end_the_transitions_that_need_them():
    episodes = _Episodes(3, 4, capacity=64, seed=7)
    episodes.run(500)
    naive, frame = episodes.naive_transitions(), episodes.frame_transitions()
    by_version = _by_version(naive)
    assert 20 < len(frame) < 64  # only the newest, all complete and unbroken
    _assert_same(frame, naive, [by_version[int(v)] for v in frame.versions])
    newest = sorted(by_version)[-5:-1]
    assert set(newest) <= {int(v) for v in frame.versions}


def test_sampling_draws_valid_transitions_uniformly_and_each_frame_is_stored_once():
    episodes = _Episodes(3, 4, capacity=10_000, seed=3)
    episodes.run(300)
    sampled = episodes.frames.sample(256)
    assert episodes.frames.ring.valid(sampled.indices).all()
    again = episodes.frames.ring.transitions(sampled.indices)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(sampled.batch, name), getattr(again, name))
    assert sampled.batch.obs.shape == (256, 5, 6, 8) and sampled.batch.obs.dtype == np.uint8
    per_frame = episodes.frames.nbytes / episodes.frames.capacity
    assert per_frame < FRAME.nbytes + ACTIONS + 60  # one frame per slot, no stacks, no next_obs
    assert len(np.unique(sampled.indices)) > 150
    empty = FrameReplay(8, FRAME, ACTIONS, 3, 0.9)
    with pytest.raises(ValueError, match="no complete transition"):
        empty.sample(4)
    frame = np.zeros(FRAME.shape, np.uint8)
    empty.push(0, EnvStep(frame, 1, 1.0, frame, False, False, None, 0))  # one step of three: open
    with pytest.raises(ValueError, match="no complete transition"):
        empty.sample(4)


@pytest.mark.parametrize("stack", [1, 2])
def test_an_episode_whose_newest_frame_was_overwritten_goes_on_without_stacking_past_it(stack):
    replay = FrameReplay(6, FRAME, ACTIONS, 1, 0.9, stack)
    frames = [np.full(FRAME.shape, i, np.uint8) for i in range(20)]
    replay.push(0, EnvStep(frames[0], 1, 1.0, frames[1], False, False, None, 0))
    for t in range(8):  # another actor's steps overwrite both frames of stream 0
        replay.push(1, EnvStep(frames[10], 2, 0.0, frames[10], False, False, None, 1 + t))
    replay.push(0, EnvStep(frames[1], 3, 2.0, frames[2], False, False, None, 9))
    live = np.arange(replay.capacity)
    starts = live[replay.ring.valid(live)]
    resumed = starts[replay.ring.transitions(starts).versions == 9]
    if stack == 2:  # its stack needs frames[0], which is gone
        assert len(resumed) == 0
    else:
        batch = replay.ring.transitions(resumed)
        assert batch.obs[0, 0, 0, 0] == 1 and batch.next_obs[0, 0, 0, 0] == 2
        assert batch.rewards[0] == 2.0 and batch.discounts[0] == np.float32(0.9)
