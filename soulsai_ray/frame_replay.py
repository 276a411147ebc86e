"""Replay that stores each frame once: n-step transitions and frame stacks are indices, not copies.

An image transition of the plain :class:`~soulsai_ray.replay.ReplayBuffer` holds ``obs`` and
``next_obs``, so every frame is stored twice (n-step: n + 1 transitions share it); stacking k
frames multiplies that by k. Here, as in Dopamine's and Ape-X's circular buffers, each env step
writes one slot (the frame after it, with the valid actions there; the step's action, reward and
policy version go to the slot of the frame it acted on), and a fragment's start the frames of
its first observation (one slot at an episode's start, whose stack repeats its first frame).
Each step carries the n of its transition (`StepRecorder.set_n`: ``algo.n_step_start`` anneals
it), at most the replay's n.
Slots are linked to the next and previous slot of the same episode
(:class:`~soulsai_ray.frame_ring.FrameRing`), so several actors' streams may interleave; a
transition is built when it is sampled.

Transitions equal, field for field, those of :class:`~soulsai_ray.transitions.NStepAccumulator`
over the same steps (stacks: over stacked observations). A transition becomes valid once all its
slots are written, and stops being valid when one of them is overwritten. Rollout actors send
steps in batches (:class:`~soulsai_ray.steps.StepBatch`, ``algo.replay_layout: frames``).

Order of calls::

    replay = FrameReplay(capacity, frame_spec, num_actions, n=3, gamma=0.99, stack=4)
    replay.add(step_batch, keep)              # a stream's steps; stale ones (keep False) start none
    replay.push(stream, env_step)             # or a stream's steps one EnvStep at a time
    replay.abandon(stream)                    # the stream's running episode is lost (env crash)
    sampled = replay.sample(batch_size)       # SampledBatch of TransitionBatch, like ReplayBuffer
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soulsai_ray.frame_ring import NONE, FrameRing
from soulsai_ray.inbound import Limits, check_steps
from soulsai_ray.observations import ObsSpec
from soulsai_ray.replay import SampledBatch, _saved_obs_spec
from soulsai_ray.steps import StepBatch
from soulsai_ray.transitions import EnvStep

LAYOUT = "frames"
"""The ``layout`` tag of a saved FrameReplay (``algo.replay_layout``)."""
DRAW_ROUNDS = 8
"""Rounds of random draws before `FrameReplay.sample` lists every valid slot instead."""


@dataclass
class _Stream:
    """One sender's running episode."""

    open: int = NONE
    """Slot number of its newest frame; `NONE` between episodes."""
    seq: int = -1
    """The ``seq`` of the `StepBatch` that continues it."""
    pending: deque[int] = field(default_factory=deque)
    """Slot numbers of its steps whose transitions wait for later steps (fewer than n)."""


class FrameReplay:
    """Uniform replay of n-step transitions over frames stored once.

    ``len()`` counts the complete transitions (one per stored step that is not stale and has
    its n steps or its episode's end), as a `ReplayBuffer`'s does.

    Args:
        capacity: Slots: one per env step plus one per fragment start (its first frames).
        obs_spec: One frame (a uint8 image [H, W, C]; vectors work the same way).
        num_actions: Size of the discrete action space.
        n: The most steps a transition sums over: a step's own n (`StepBatch.horizons`) is at
            most this.
        gamma: Discount factor.
        stack: Frames per observation, stacked along the last axis, oldest first.
        seed: Seed of the sampling RNG.
    """

    def __init__(
        self,
        capacity: int,
        obs_spec: ObsSpec | int,
        num_actions: int,
        n: int,
        gamma: float,
        stack: int = 1,
        seed: int = 0,
    ) -> None:
        if capacity < 2 or num_actions < 1 or n < 1 or stack < 1:
            raise ValueError(
                f"need capacity >= 2 and num_actions, n, stack >= 1, got capacity={capacity}, "
                f"num_actions={num_actions}, n={n}, stack={stack}"
            )
        self.capacity, self.num_actions = capacity, num_actions
        self.n, self.gamma, self.stack = n, gamma, stack
        self.obs_spec = spec = ObsSpec.of(obs_spec)
        stacked = ObsSpec((*spec.shape[:-1], spec.shape[-1] * stack), spec.dtype, spec.high)
        self._shapes = Limits.of_shapes(stacked, num_actions, stack, max_n=n)
        self._rng = np.random.default_rng(seed)
        self.ring = FrameRing(capacity, spec, num_actions, n, gamma, stack)
        """The slots; its ``valid`` and ``transitions`` rebuild what `sample` draws."""
        self._streams: dict[int, _Stream] = {}

    @property
    def nbytes(self) -> int:
        """Bytes of storage."""
        return self.ring.nbytes

    def __len__(self) -> int:
        return self.ring.complete

    def add(self, batch: StepBatch, keep: np.ndarray | None = None, checked: bool = False) -> None:
        """Stores a stream's steps (see :mod:`soulsai_ray.steps` for the format).

        A batch whose ``seq`` is not the one its stream's open episode expects (a batch was lost
        or refused) gives that episode up and begins anew with the batch's first frames.

        Args:
            batch: The steps.
            keep: bool [B]; a step where False (stale) stores its frame and links, so the
                transitions of the steps before it are whole, but starts no transition.
                None keeps every step.
            checked: The caller has passed the batch through `inbound.check_steps` against
                this replay's sizes or stricter limits (`ReplayStore`); else it is checked here.

        Raises:
            ValueError: If the batch fails `inbound.check_steps` (sizes only) or ``keep``
                does not match it.
        """
        problem = None if checked else check_steps(batch, self._shapes, None)
        if problem is not None:
            raise ValueError(f"invalid batch: {problem.detail}")
        keep = np.ones(len(batch), np.bool_) if keep is None else np.asarray(keep, np.bool_)
        if keep.shape != (len(batch),):
            raise ValueError(f"keep has shape {keep.shape}, the batch {len(batch)} steps")
        stream = self._stream(batch.stream)
        links_on = batch.continues and stream.seq == batch.seq and self.ring.live(stream.open)
        first_obs = iter(batch.first_obs)
        for i in range(len(batch)):
            if batch.starts[i]:
                frames = next(first_obs)
                if i > 0 or not links_on:
                    self._abandon(stream)
                    stream.open = self._write_start(frames)
            self._step(
                stream,
                (batch.actions[i], batch.rewards[i], batch.versions[i], batch.horizons[i]),
                batch.next_frames[i],
                (bool(batch.terminated[i]), bool(batch.truncated[i])),
                batch.next_masks[i],
                bool(keep[i]),
            )
        stream.seq = batch.seq + len(batch)
        self._stored()

    def push(self, stream: int, step: EnvStep, n: int | None = None) -> None:
        """Adds one env step of ``stream`` (an actor's env); its observations are single frames
        (with ``stack`` > 1 an episode's stacks repeat its first frame).

        ``step.next_obs`` is stored; ``step.obs`` only at an episode's first step (later it is
        the frame the previous push stored). Its transition sums ``n`` steps (default: the
        replay's n).

        Raises:
            ValueError: ``n`` is outside [1, the replay's n].
        """
        n = self.n if n is None else n
        if not 1 <= n <= self.n:
            raise ValueError(f"n must be in [1, {self.n}], got {n}")
        running = self._stream(stream)
        if not self.ring.live(running.open):
            # an episode's first frame; after an overwritten one, linked to it so that no stack
            # reaches back past it
            running.pending.clear()
            running.open = self._write(step.obs, running.open, None)
        mask = np.ones(self.num_actions, np.bool_) if step.next_mask is None else step.next_mask
        end = (step.terminated, step.truncated)
        acted = (step.action, step.reward, step.version, n)
        self._step(running, acted, step.next_obs, end, mask, True)
        self._stored()

    def abandon(self, stream: int) -> None:
        """Forgets ``stream``'s running episode: its open steps never complete a transition."""
        if stream in self._streams:
            self._abandon(self._streams[stream])

    def sample(self, batch_size: int, beta: float | None = None) -> SampledBatch:
        """Draws ``batch_size`` valid transitions uniformly with replacement (redrawing slots
        that start none: a fragment's earlier frames, an episode's last frame, stale steps,
        transitions still open or partly overwritten). ``beta`` is ignored, as by the uniform
        `ReplayBuffer`.

        Raises:
            ValueError: ``batch_size`` < 1, or no valid transition is stored.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        written, valid = self.ring.written, self.ring.valid
        chosen = np.zeros(0, np.int64)
        for _ in range(DRAW_ROUNDS if written else 0):
            draw = self._rng.integers(0, written, size=2 * batch_size)
            chosen = np.concatenate([chosen, draw[valid(draw)]])
            if len(chosen) >= batch_size:
                break
        if len(chosen) < batch_size:  # few valid slots: draw among all of them
            every = np.flatnonzero(valid(np.arange(written)))
            if not len(every):
                raise ValueError("the replay holds no complete transition to sample")
            chosen = np.concatenate([chosen, self._rng.choice(every, batch_size - len(chosen))])
        chosen = chosen[:batch_size]
        weights = np.ones(batch_size, np.float32)
        return SampledBatch(self.ring.transitions(chosen), chosen, weights)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Does nothing: uniform replay has no priorities."""

    def state_dict(self) -> dict[str, Any]:
        """Returns copies of the written slots, the open streams, counters and RNG state."""
        self._prune()
        streams = list(self._streams.items())
        pending = np.full((len(streams), self.n - 1), NONE, np.int64)
        for row, (_, stream) in enumerate(streams):
            pending[row, : len(stream.pending)] = list(stream.pending)
        spec = self.obs_spec
        return {
            "layout": LAYOUT,
            **self.ring.arrays(),
            "capacity": self.capacity,
            "num_actions": self.num_actions,
            "n": self.n,
            "stack": self.stack,
            "obs_shape": list(spec.shape),
            "obs_dtype": spec.dtype,
            "obs_high": spec.high,
            "total_written": self.ring.total_written,
            "stream_ids": np.array([key for key, _ in streams], np.int64),
            "stream_open": np.array([s.open for _, s in streams], np.int64),
            "stream_seq": np.array([s.seq for _, s in streams], np.int64),
            "stream_pending": pending,
            "rng_state": copy.deepcopy(self._rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a `state_dict`; later samples match those of the saved buffer. A state of a
        replay with a smaller n loads too (``algo.n_step_start`` added at a resume).

        Raises:
            ValueError: The state is of a transitions replay, of a buffer of other sizes or of a
                larger n, or inconsistent.
        """
        layout = state.get("layout", "transitions")
        if layout != LAYOUT:
            raise ValueError(
                f"the saved replay stores {layout} (algo.replay_layout={layout}), this run "
                "stores frames (algo.replay_layout=frames): resume with the saved layout, or "
                "without the saved replay"
            )
        for key in ("capacity", "num_actions", "stack"):
            if state[key] != getattr(self, key):
                raise ValueError(f"state has {key}={state[key]}, buffer has {getattr(self, key)}")
        if state["n"] > self.n:
            raise ValueError(f"state has n={state['n']}, above this buffer's n={self.n}")
        saved = _saved_obs_spec(state)
        if saved != self.obs_spec:
            raise ValueError(
                f"state holds {saved.describe()} frames, buffer {self.obs_spec.describe()}"
            )
        columns = ("stream_ids", "stream_open", "stream_seq", "stream_pending")
        streams = {
            int(key): _Stream(int(number), int(seq), deque(int(p) for p in pending if p != NONE))
            for key, number, seq, pending in zip(*(state[c] for c in columns), strict=True)
        }
        ring = FrameRing(
            self.capacity, self.obs_spec, self.num_actions, self.n, self.gamma, self.stack
        )
        written = min(int(state["total_written"]), self.capacity)
        if "horizons" not in state:  # saved before steps carried their n: all summed its n
            state = {**state, "horizons": np.full(written, state["n"], np.int32)}
        ring.load_arrays(state, int(state["total_written"]))
        self.ring, self._streams = ring, streams
        self._rng.bit_generator.state = copy.deepcopy(state["rng_state"])

    def _stream(self, key: int) -> _Stream:
        """The stream ``key`` (a new one after forgetting those whose frames are overwritten)."""
        if key not in self._streams:
            self._prune()
            self._streams[key] = _Stream()
        return self._streams[key]

    def _prune(self) -> None:
        """Forgets streams with no live newest frame: nothing of theirs can continue."""
        for key in [k for k, s in self._streams.items() if not self.ring.live(s.open)]:
            del self._streams[key]

    def _step(
        self,
        stream: _Stream,
        step: tuple[int, float, int, int],
        next_frame: np.ndarray,
        end: tuple[bool, bool],
        mask: np.ndarray,
        keep: bool,
    ) -> None:
        """Adds one step (action, reward, version, horizon) to the stream's open episode, whose
        newest frame is live; ``end`` is (terminated, truncated) after it. A waiting step
        completes once its horizon's steps are written (steps complete in order: one waits for
        those before it)."""
        ring, number = self.ring, stream.open
        ring.set_step(number, step, end, keep)
        stream.pending.append(number)
        following = self._write(next_frame, number, mask)
        ended = any(end)
        while stream.pending and (ended or len(stream.pending) >= ring.horizon(stream.pending[0])):
            done = stream.pending.popleft()
            ring.close_step(done, complete=True)
            self._completed(done)
        stream.open = NONE if ended else following

    def _abandon(self, stream: _Stream) -> None:
        """Ends the stream's open episode where it is: its open steps start no transition."""
        for number in stream.pending:
            self.ring.close_step(number, complete=False)
        stream.pending.clear()
        stream.open = NONE

    def _write_start(self, frames: np.ndarray) -> int:
        """Writes a fragment's first observation, its frames [k, *frame] oldest first, as a chain
        of slots (leading frames equal to the next are left out: the stack repeats its oldest
        frame); returns the slot number of the newest."""
        first = 0
        while first < len(frames) - 1 and np.array_equal(frames[first], frames[first + 1]):
            first += 1
        number = NONE
        for frame in frames[first:]:
            number = self._write(frame, number, None)
        return number

    def _write(self, frame: np.ndarray, previous: int, mask: np.ndarray | None) -> int:
        """Writes a frame into the ring's next slot (`FrameRing.write`); returns its number."""
        return self.ring.write(frame, previous, mask)

    def _completed(self, number: int) -> None:
        """Called when the transition starting at slot number ``number`` has its n steps."""

    def _stored(self) -> None:
        """Called when `add` or `push` has stored its steps."""
