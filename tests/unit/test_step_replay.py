"""StepRecorder + FrameReplay (each frame shipped and stored once) against NStepAccumulator +
ReplayBuffer (obs and next_obs per transition) on random episodes of a small image env seen
through StackFrames: episode ends, sampler resets, lost batches and stale steps."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from soulsai_ray.envs.wrappers import StackFrames
from soulsai_ray.frame_replay import FrameReplay
from soulsai_ray.observations import ObsSpec
from soulsai_ray.prioritized_frames import PrioritizedFrameReplay
from soulsai_ray.replay import ReplayBuffer
from soulsai_ray.steps import StepBatch, StepRecorder, split_frames
from soulsai_ray.transitions import EnvStep, NStepAccumulator, TransitionBatch

FRAME = ObsSpec.image(5, 6, 2)
ACTIONS, N, GAMMA = 4, 3, 0.9
FIELDS = ("obs", "actions", "rewards", "next_obs", "discounts", "next_masks", "versions")


class TinyImageEnv(gym.Env):
    """Random 5x6x2 frames (sometimes the previous one again), random masks, episodes of 1-12
    steps that end terminated or truncated."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.observation_space = gym.spaces.Box(0, 255, FRAME.shape, np.uint8)
        self.action_space = gym.spaces.Discrete(ACTIONS)
        self.rng, self.left, self.frame = rng, 0, None

    def reset(self, *, seed=None, options=None):
        self.left = int(self.rng.integers(1, 13))
        self.frame = self.rng.integers(0, 256, FRAME.shape, np.uint8)
        return self.frame, {}

    def step(self, action):
        self.left -= 1
        if self.rng.random() > 0.2:  # else the same frame again: a game that stood still
            self.frame = self.rng.integers(0, 256, FRAME.shape, np.uint8)
        mask = self.rng.random(ACTIONS) < 0.6
        mask[self.rng.integers(ACTIONS)] = True
        ends = self.left == 0
        terminated = ends and self.rng.random() < 0.5
        reward = float(self.rng.normal())
        return self.frame, reward, terminated, ends and not terminated, {"action_mask": mask}


def _fresh(version: int) -> bool:
    """The stale rule both replays follow: every 7th version is too old."""
    return version % 7 != 0


class _Streams:
    """Several actors' envs stepped at random, each recorded both ways; batches popped at
    random, some lost on the way, samplers reset mid-episode."""

    def __init__(
        self, stack: int, seed: int, capacity: int = 100_000, streams: int = 3, cls=FrameReplay
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.stack = stack
        self.envs = [self._env() for _ in range(streams)]
        self.obs: list[np.ndarray | None] = [None] * streams
        self.recorders = [StepRecorder(ACTIONS, N, stack) for _ in range(streams)]
        self.accumulators = [NStepAccumulator(N, GAMMA, ACTIONS) for _ in range(streams)]
        self.frames = cls(capacity, FRAME, ACTIONS, N, GAMMA, stack, seed)
        self.naive: list[tuple[int, int, TransitionBatch]] = []
        """(stream, seq of the step that completed them, transitions) from the accumulators."""
        self.seqs = [0] * streams
        self.lost: list[tuple[int, int, int]] = []
        """(stream, first seq, last seq) of each batch lost on its way to the replay."""
        self.version = 0
        self.seq_of: dict[int, int] = {}
        """The stream seq of the step of each version."""
        self.resets = 0
        self.episodes = 0

    def _env(self) -> gym.Env:
        env = TinyImageEnv(self.rng)
        return StackFrames(env, self.stack) if self.stack > 1 else env

    def run(self, steps: int, lose: float = 0.0, reset: float = 0.0, anneal: float = 0.0) -> None:
        """``anneal``: chance per step that a stream's sampler is given a new n in [1, N]."""
        for _ in range(steps):
            i = int(self.rng.integers(len(self.envs)))
            if self.rng.random() < anneal:  # applies where each says, the same for both
                n = int(self.rng.integers(1, N + 1))
                self.recorders[i].set_n(n)
                self.accumulators[i].set_n(n)
            if self.obs[i] is not None and self.rng.random() < reset:  # an env crash
                self.recorders[i].reset()
                self.accumulators[i].reset()
                self.obs[i] = None
                self.resets += 1
            self._step(i)
            if self.rng.random() < 0.3:
                self.ship(i, lost=self.rng.random() < lose)

    def _step(self, i: int) -> None:
        if self.obs[i] is None:
            self.obs[i], _ = self.envs[i].reset()
            self.episodes += 1
        action = int(self.rng.integers(ACTIONS))
        next_obs, reward, terminated, truncated, info = self.envs[i].step(action)
        args = (self.obs[i], action, reward, next_obs, terminated, truncated, info["action_mask"])
        self.version += 1
        self.seq_of[self.version] = self.seqs[i]
        step = EnvStep(*args, self.version)
        self.recorders[i].push(step)
        self.accumulators[i].push(step)
        done = self.accumulators[i].pop()
        if done is not None:
            self.naive.append((i, self.seqs[i], done))
        self.seqs[i] += 1
        self.obs[i] = None if terminated or truncated else next_obs

    def ship(self, i: int, lost: bool = False) -> StepBatch | None:
        batch = self.recorders[i].pop()
        if batch is None:
            return None
        if lost:
            self.lost.append((i, batch.seq, batch.seq + len(batch) - 1))
        else:
            self.frames.add(batch, np.array([_fresh(int(v)) for v in batch.versions]))
        return batch

    def expected(self) -> TransitionBatch:
        """The accumulators' fresh transitions whose steps all reached the replay."""
        rows = []
        for stream, completed, batch in self.naive:
            for row, version in enumerate(batch.versions.tolist()):
                start = self.seq_of[version]
                if _fresh(version) and not self._crosses_loss(stream, start, completed):
                    rows.append(batch.select(np.array([row])))
        return TransitionBatch.concat(rows)

    def stored(self) -> TransitionBatch:
        """Every transition the frames replay can draw."""
        ring = self.frames.ring
        slots = np.arange(ring.written)
        return ring.transitions(slots[ring.valid(slots)])

    def _crosses_loss(self, stream: int, first: int, last: int) -> bool:
        return any(s == stream and a <= last and first <= b for s, a, b in self.lost)


def _by_version(batch: TransitionBatch) -> TransitionBatch:
    return batch.select(np.argsort(batch.versions, kind="stable"))


def _assert_same(actual: TransitionBatch, expected: TransitionBatch) -> None:
    actual, expected = _by_version(actual), _by_version(expected)
    np.testing.assert_array_equal(actual.versions, expected.versions)
    for name in FIELDS:
        assert getattr(actual, name).dtype == getattr(expected, name).dtype, name
        np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name), name)


@pytest.mark.parametrize("stack", [1, 4])
def test_recorded_steps_give_the_naive_transitions_through_ends_resets_and_lost_batches(stack):
    streams = _Streams(stack, seed=stack)
    streams.run(1500, lose=0.1, reset=0.03)
    for i in range(len(streams.envs)):
        streams.ship(i)
    assert len(streams.lost) > 5 and streams.resets > 5
    expected = streams.expected()
    assert len(expected) > 500
    _assert_same(streams.stored(), expected)
    assert len(streams.frames) == len(expected)  # complete, fresh, none crossing a loss
    discounts = set(np.unique(expected.discounts).tolist())
    assert {0.0, np.float32(GAMMA**N), np.float32(GAMMA)} <= discounts  # ends of both kinds


@pytest.mark.parametrize("stack", [1, 4])
def test_steps_carry_the_n_their_sampler_gives_them_through_losses_and_resets(stack):
    """n changes at random (as ``algo.n_step_start`` anneals it): each transition sums the n
    its sampler gave its step, field for field the accumulator's, a save and load included."""
    streams = _Streams(stack, seed=20 + stack)
    streams.run(700, lose=0.1, reset=0.03, anneal=0.05)
    loaded = FrameReplay(100_000, FRAME, ACTIONS, N, GAMMA, stack)
    loaded.load_state_dict(streams.frames.state_dict())
    streams.frames = loaded
    streams.run(700, lose=0.1, reset=0.03, anneal=0.05)
    for i in range(len(streams.envs)):
        streams.ship(i)
    expected = streams.expected()
    _assert_same(streams.stored(), expected)
    horizons = set(streams.frames.ring.arrays()["horizons"].tolist())
    assert horizons == {1, 2, 3}
    discounts = set(np.unique(expected.discounts).tolist())
    assert {np.float32(GAMMA**k) for k in (1, 2, 3)} <= discounts


def test_a_saved_state_of_a_smaller_or_older_n_loads_each_step_with_its_n():
    """A replay saved with a fixed n (or before steps carried one) loads into one whose n is
    larger (``algo.n_step_start`` added at a resume): its transitions stay the same."""
    streams = _Streams(1, seed=4)
    streams.run(400, reset=0.03)
    for i in range(len(streams.envs)):
        streams.ship(i)
    state = streams.frames.state_dict()
    before = streams.stored()
    older = {k: v for k, v in state.items() if k != "horizons"}
    for saved in (state, older):
        larger = FrameReplay(100_000, FRAME, ACTIONS, N + 2, GAMMA)
        larger.load_state_dict(saved)
        ring = larger.ring
        slots = np.arange(ring.written)
        _assert_same(ring.transitions(slots[ring.valid(slots)]), before)
    forged = {**state, "horizons": np.where(state["horizons"] == N, N + 1, state["horizons"])}
    with pytest.raises(ValueError, match=r"saved horizons span \[4, 4\], n=3"):
        FrameReplay(100_000, FRAME, ACTIONS, N, GAMMA).load_state_dict(forged)


@pytest.mark.parametrize("stack", [1, 4])
def test_without_losses_each_frame_is_stored_once(stack):
    streams = _Streams(stack, seed=5)
    streams.run(800)
    for i in range(len(streams.envs)):
        streams.ship(i)
    steps = sum(streams.seqs)
    # one slot per step (its next frame) and one per episode (its first frame, repeated in the
    # stacks); a batch that goes on with the stream's episode writes none of its start frames
    assert streams.frames.ring.total_written == steps + streams.episodes
    per_slot = streams.frames.nbytes / streams.frames.capacity
    assert per_slot == FRAME.nbytes + ACTIONS + 54


@pytest.mark.parametrize("stack", [1, 4])
def test_prioritized_batches_leave_a_priority_exactly_where_a_valid_transition_starts(stack):
    """Batches with losses, resets and stale steps into a ring they overwrite many times."""
    streams = _Streams(stack, seed=9, capacity=150, cls=PrioritizedFrameReplay)
    replay = streams.frames
    for _ in range(30):
        streams.run(50, lose=0.1, reset=0.03)
        valid = replay.ring.valid(np.arange(replay.ring.written))
        np.testing.assert_array_equal(replay.state_dict()["priorities"] > 0, valid)
    assert replay.ring.total_written > 5 * replay.capacity and streams.resets > 5


def test_a_batch_after_a_lost_one_begins_anew_with_the_true_stack_history():
    recorder = StepRecorder(ACTIONS, 1, frame_stack=3)
    replay = FrameReplay(100, FRAME, ACTIONS, n=1, gamma=GAMMA, stack=3)
    frames = [np.full(FRAME.shape, t, np.uint8) for t in range(12)]

    def stacked(t: int) -> np.ndarray:
        return np.concatenate([frames[max(t - i, 0)] for i in (2, 1, 0)], axis=-1)

    def push(t: int) -> None:
        recorder.push(
            EnvStep(stacked(t), t % ACTIONS, float(t), stacked(t + 1), False, False, None, t)
        )

    for t in range(4):
        push(t)
    first = recorder.pop()
    replay.add(first)
    assert (first.seq, first.continues, replay.ring.total_written) == (0, False, 5)
    for t in range(4, 7):
        push(t)
    lost = recorder.pop()
    assert (lost.seq, lost.continues, len(lost.first_obs)) == (4, True, 1)
    for t in range(7, 9):
        push(t)
    after = recorder.pop()
    np.testing.assert_array_equal(after.first_obs[0], split_frames(stacked(7), 3))
    replay.add(after)
    assert replay.ring.total_written == 5 + 3 + 2  # frames 5, 6, 7 of the new fragment, 8, 9
    batch = _by_version(replay.sample(64).batch)
    assert set(batch.versions.tolist()) == {0, 1, 2, 3, 7, 8}  # 4-6 were lost
    late = batch.select(batch.versions == 7)
    np.testing.assert_array_equal(late.obs[0], stacked(7))
    np.testing.assert_array_equal(late.next_obs[0], stacked(8))


def test_stale_steps_store_their_frames_but_start_no_transition_and_len_counts_complete_ones():
    recorder = StepRecorder(ACTIONS, 3)
    replay = FrameReplay(100, FRAME, ACTIONS, n=3, gamma=GAMMA)
    frame = np.zeros(FRAME.shape, np.uint8)
    for t in range(6):
        recorder.push(EnvStep(frame + t, 0, 1.0, frame + t + 1, False, False, None, t))
    replay.add(recorder.pop(), np.array([True, False, False, True, True, True]))
    assert len(replay) == 2  # steps 0 and 3 are complete; 4 and 5 wait, 1 and 2 are stale
    sampled = replay.sample(16).batch
    assert set(sampled.versions.tolist()) == {0, 3}
    assert np.all(sampled.rewards == np.float32(1 + GAMMA + GAMMA**2))  # over the stale steps
    recorder.push(EnvStep(frame + 6, 0, 1.0, frame + 7, True, False, None, 6))
    replay.add(recorder.pop())
    assert len(replay) == 5
    stale = FrameReplay(100, FRAME, ACTIONS, n=1, gamma=GAMMA)
    recorder.set_n(1)  # between episodes: applies to the next step
    recorder.push(EnvStep(frame, 0, 1.0, frame, True, False, None, 0))
    stale.add(recorder.pop(), np.array([False]))
    assert len(stale) == 0
    with pytest.raises(ValueError, match="no complete transition"):
        stale.sample(4)


def test_a_saved_frame_replay_continues_its_open_streams_exactly():
    streams = _Streams(4, seed=9)
    streams.run(700, lose=0.05, reset=0.02)
    for i in range(len(streams.envs)):
        streams.ship(i)
    state = streams.frames.state_dict()
    assert state["layout"] == "frames" and 1 <= len(state["stream_ids"]) <= 3
    waiting = state["stream_pending"][state["stream_pending"] >= 0]
    crossing = {int(v) for v in state["versions"][waiting] if _fresh(int(v))}
    assert crossing  # open transitions at the save, to be completed by the loaded replay
    loaded = FrameReplay(100_000, FRAME, ACTIONS, N, GAMMA, 4, seed=1)
    loaded.load_state_dict(state)
    assert len(loaded) == len(streams.frames)
    original, again = streams.frames.sample(32), loaded.sample(32)
    np.testing.assert_array_equal(original.indices, again.indices)
    streams.frames = loaded  # open episodes, pending steps and expected seqs go on
    streams.run(300)  # completes the transitions open at the save
    streams.run(400, lose=0.05, reset=0.02)
    for i in range(len(streams.envs)):
        streams.ship(i)
    stored = streams.stored()
    _assert_same(stored, streams.expected())
    assert crossing <= set(stored.versions.tolist())


def test_a_saved_replay_of_the_other_layout_is_refused_naming_it():
    frames = FrameReplay(10, FRAME, ACTIONS, N, GAMMA)
    transitions = ReplayBuffer(10, FRAME, ACTIONS)
    with pytest.raises(ValueError, match="stores transitions .*algo.replay_layout=frames"):
        frames.load_state_dict(transitions.state_dict())
    with pytest.raises(ValueError, match="stores frames .*this run stores transitions"):
        transitions.load_state_dict(frames.state_dict())
    smaller_n = FrameReplay(10, FRAME, ACTIONS, N - 1, GAMMA)
    with pytest.raises(ValueError, match="n=3, above this buffer's n=2"):
        smaller_n.load_state_dict(frames.state_dict())
