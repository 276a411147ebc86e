"""FrameReplay (each frame stored once) against NStepAccumulator + ReplayBuffer (obs and next_obs
stored per transition) on random interleaved episodes; PrioritizedFrameReplay's priorities."""

from __future__ import annotations

import numpy as np
import pytest

from soulsai_ray.frame_replay import FrameReplay
from soulsai_ray.observations import ObsSpec
from soulsai_ray.prioritized_frames import PrioritizedFrameReplay
from soulsai_ray.replay import PrioritizedReplayBuffer, ReplayBuffer
from soulsai_ray.transitions import EnvStep, NStepAccumulator, TransitionBatch

FRAME = ObsSpec.image(5, 6, 2)
ACTIONS = 4
FIELDS = ("obs", "actions", "rewards", "next_obs", "discounts", "next_masks", "versions")


class _Episodes:
    """Random episodes of several streams, pushed step by step, interleaved, into both replays."""

    def __init__(
        self, n: int, stack: int, capacity: int, seed: int, streams: int = 3, cls=FrameReplay
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.n, self.stack, self.gamma = n, stack, 0.9
        spec = ObsSpec.image(5, 6, 2 * stack)
        self.naive = ReplayBuffer(10_000, spec, ACTIONS)
        self.frames = cls(capacity, FRAME, ACTIONS, n, self.gamma, stack, seed)
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


@pytest.mark.parametrize("cls", [FrameReplay, PrioritizedFrameReplay])
@pytest.mark.parametrize("stack", [1, 2])
def test_an_episode_whose_newest_frame_was_overwritten_goes_on_without_stacking_past_it(stack, cls):
    replay = cls(6, FRAME, ACTIONS, 1, 0.9, stack)
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
    if cls is PrioritizedFrameReplay:  # drawn only while valid
        np.testing.assert_array_equal(_priorities(replay) > 0, _valid(replay))


# --- PrioritizedFrameReplay ---------------------------------------------------------------------


def _priorities(replay: PrioritizedFrameReplay) -> np.ndarray:
    return replay.state_dict()["priorities"]


def _valid(replay: FrameReplay) -> np.ndarray:
    return replay.ring.valid(np.arange(replay.ring.written))


@pytest.mark.parametrize(("n", "stack"), [(1, 1), (3, 1), (3, 4), (5, 2)])
def test_a_slot_has_a_priority_exactly_while_a_valid_transition_starts_there(n, stack):
    """Through overwrites (64 slots), crashes and TD updates: no draw can land on a transition
    that lost a frame, and every valid one can be drawn."""
    episodes = _Episodes(n, stack, capacity=64, seed=11 * n + stack, cls=PrioritizedFrameReplay)
    replay = episodes.frames
    rng = np.random.default_rng(0)
    for _ in range(60):
        episodes.run(int(rng.integers(1, 20)))
        np.testing.assert_array_equal(_priorities(replay) > 0, _valid(replay))
        if len(replay):
            sampled = replay.sample(16)
            assert replay.ring.valid(sampled.indices).all()
            replay.update_priorities(sampled.indices, rng.normal(size=16) * 5)
    assert replay.ring.total_written > 3 * replay.capacity
    # the transitions are still the naive replay's, as in the uniform replay
    naive, frame = episodes.naive_transitions(), episodes.frame_transitions()
    _assert_same(frame, naive, [_by_version(naive)[int(v)] for v in frame.versions])


def _four_transitions(**per: float) -> PrioritizedFrameReplay:
    """One stream of 4 steps (n=1), the last terminating: 4 valid transitions in slots 0-3."""
    replay = PrioritizedFrameReplay(16, FRAME, ACTIONS, 1, 0.9, seed=5, **per)
    frames = [np.full(FRAME.shape, i, np.uint8) for i in range(5)]
    for t in range(4):
        replay.push(
            0, EnvStep(frames[t], t % ACTIONS, float(t), frames[t + 1], t == 3, False, None, t)
        )
    np.testing.assert_array_equal(np.flatnonzero(_valid(replay)), [0, 1, 2, 3])
    return replay


def test_prioritized_frames_draw_by_priority_with_the_transitions_replays_weights():
    replay = _four_transitions(alpha=1.0, beta=0.5, eps=1e-6)
    replay.update_priorities(np.arange(4), np.array([1.0, -2.0, 3.0, 4.0]) - 1e-6)
    draws = np.concatenate([replay.sample(100).indices for _ in range(400)])
    freqs = np.bincount(draws, minlength=5)[:5] / len(draws)
    np.testing.assert_allclose(freqs, [0.1, 0.2, 0.3, 0.4, 0.0], atol=0.01)
    # Mass [1, 2, 3, 4] in 10 strata of width 1 hits each slot once per unit of its priority,
    # with the weights of a transitions replay holding the same priorities.
    sampled = replay.sample(10)
    np.testing.assert_array_equal(sampled.indices, [0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    expected = np.array([1.0, 1 / np.sqrt(2), 1 / np.sqrt(3), 0.5])
    np.testing.assert_allclose(sampled.weights, expected[sampled.indices], rtol=1e-5)
    transitions = PrioritizedReplayBuffer(8, FRAME, ACTIONS, alpha=1.0, beta=0.5, seed=5)
    transitions.add(replay.ring.transitions(np.arange(4)))
    transitions.update_priorities(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]) - 1e-6)
    np.testing.assert_allclose(sampled.weights, transitions.sample(10).weights, rtol=1e-6)
    np.testing.assert_array_equal(
        sampled.batch.rewards, replay.ring.transitions(sampled.indices).rewards
    )
    assert replay.sample(8, beta=0.0).weights.tolist() == [1.0] * 8 and replay.beta == 0.0


def test_new_transitions_get_the_largest_priority_and_lost_ones_are_not_revived():
    replay = _four_transitions(alpha=0.5, eps=0.5)
    np.testing.assert_array_equal(_priorities(replay)[:4], [1.0, 1.0, 1.0, 1.0])
    replay.update_priorities(np.array([0, 1]), np.array([15.5, -0.5]))  # (16)**0.5, (1)**0.5
    frame = np.full(FRAME.shape, 9, np.uint8)
    replay.push(1, EnvStep(frame, 0, 0.0, frame, True, False, None, 9))  # slots 5 and 6
    np.testing.assert_array_equal(_priorities(replay)[:7], [4.0, 1.0, 1.0, 1.0, 0.0, 4.0, 0.0])
    for t in range(9):  # another stream's frames fill the ring and overwrite slot 0
        replay.push(2, EnvStep(frame, 0, 0.0, frame, False, False, None, 10 + t))  # 7-16
    assert replay.ring.total_written == 17
    replay.update_priorities(np.array([0]), np.array([100.0]))  # slot 0: a frame, no transition
    assert _priorities(replay)[0] == 0.0 and not _valid(replay)[0]
    np.testing.assert_array_equal(_priorities(replay) > 0, _valid(replay))
    with pytest.raises(ValueError, match="NaN"):
        replay.update_priorities(np.array([1]), np.array([np.nan]))
    with pytest.raises(ValueError, match="outside the 16 slots"):
        replay.update_priorities(np.array([16]), np.array([1.0]))
    with pytest.raises(ValueError, match="1-D"):
        replay.update_priorities(np.array([1, 2]), np.array([1.0]))
    empty = PrioritizedFrameReplay(8, FRAME, ACTIONS, 3, 0.9)
    with pytest.raises(ValueError, match="no complete transition"):
        empty.sample(4)


def test_prioritized_frames_resume_from_their_state_and_refuse_forged_priorities():
    episodes = _Episodes(3, 2, capacity=128, seed=4, cls=PrioritizedFrameReplay)
    episodes.run(400)
    replay = episodes.frames
    replay.update_priorities(replay.sample(32).indices, np.arange(32.0))
    state = replay.state_dict()
    again = PrioritizedFrameReplay(128, FRAME, ACTIONS, 3, 0.9, 2, seed=99)
    again.load_state_dict(state)
    for _ in range(3):
        a, b = replay.sample(16, beta=0.7), again.sample(16, beta=0.7)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.weights, b.weights)
    # a uniform frames replay's state: every valid transition at priority 1
    uniform = FrameReplay(128, FRAME, ACTIONS, 3, 0.9, 2)
    uniform.load_state_dict(state)
    switched = PrioritizedFrameReplay(128, FRAME, ACTIONS, 3, 0.9, 2)
    switched.load_state_dict(uniform.state_dict())
    np.testing.assert_array_equal(_priorities(switched), _valid(switched).astype(float))
    forged = dict(state, priorities=state["priorities"].copy())
    forged["priorities"][np.flatnonzero(~_valid(replay))[0]] = 5.0
    with pytest.raises(ValueError, match="start no valid transition"):
        PrioritizedFrameReplay(128, FRAME, ACTIONS, 3, 0.9, 2).load_state_dict(forged)
    with pytest.raises(ValueError, match="alpha or eps"):
        PrioritizedFrameReplay(128, FRAME, ACTIONS, 3, 0.9, 2, alpha=0.3).load_state_dict(state)
