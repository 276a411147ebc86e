"""Replay that stores each frame once: n-step transitions and frame stacks are indices, not copies.

An image transition of the plain :class:`~soulsai_ray.replay.ReplayBuffer` holds ``obs`` and
``next_obs``, so every frame is stored twice (n-step: n + 1 transitions share it); stacking k
frames multiplies that by k. Here, as in Dopamine's and Ape-X's circular buffers, each env step
writes one slot (the frame after it, with the valid actions there; the step's action, reward and
policy version go to the slot of the frame it acted on), and an episode's start one more (its
first frame). Slots are linked to the next and previous slot of the same episode, so several
actors' streams may interleave; a
transition is built when it is sampled: its ``next_obs`` is the frame n links on (or the final
frame), its stacked frames the k - 1 links back (the episode's first frame repeated before it).

Transitions equal, field for field, those of :class:`~soulsai_ray.transitions.NStepAccumulator`
over the same steps (stacks: over stacked observations). A transition becomes valid once all its
slots are written, and stops being valid when one of them is overwritten.

Order of calls::

    replay = FrameReplay(capacity, obs_spec, num_actions, n=3, gamma=0.99, stack=4)
    replay.push(stream, obs, action, reward, next_obs, terminated, truncated, next_mask, version)
    replay.abandon(stream)                    # the stream's running episode is lost (env crash)
    sampled = replay.sample(batch_size)       # SampledBatch of TransitionBatch, like ReplayBuffer
"""

from __future__ import annotations

import numpy as np

from soulsai_ray.observations import ObsSpec
from soulsai_ray.replay import SampledBatch
from soulsai_ray.transitions import TransitionBatch

_NONE = -1
"""A link to no slot: the episode goes on beyond what was pushed, or began here."""
_GOES_ON, _TERMINATED, _TRUNCATED = 0, 1, 2
"""How a step slot's episode continues after it (``_ends``)."""


class FrameReplay:
    """Uniform replay of n-step transitions over frames stored once.

    Args:
        capacity: Slots: one per env step plus one per episode (its first frame).
        obs_spec: One frame (a uint8 image [H, W, C]; vectors work the same way).
        num_actions: Size of the discrete action space.
        n: Steps per transition.
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
        self.total_written = 0
        self._frames = spec.zeros(capacity)
        self._masks = np.ones((capacity, num_actions), np.bool_)
        self._actions = np.zeros(capacity, np.int64)
        self._rewards = np.zeros(capacity, np.float64)  # summed in float64, as NStepAccumulator
        self._versions = np.zeros(capacity, np.int64)
        self._ends = np.zeros(capacity, np.int8)
        self._is_step = np.zeros(capacity, np.bool_)
        self._stamp = np.full(capacity, _NONE, np.int64)
        """Absolute number of the slot's content: whether a link still points at it."""
        self._next = np.full(capacity, _NONE, np.int64)
        self._prev = np.full(capacity, _NONE, np.int64)
        self._open: dict[int, int] = {}
        """Per stream, the slot number of its running episode's newest frame."""
        self._rng = np.random.default_rng(seed)

    @property
    def nbytes(self) -> int:
        """Bytes of storage."""
        arrays = (self._frames, self._masks, self._actions, self._rewards, self._versions)
        more = (self._ends, self._is_step, self._stamp, self._next, self._prev)
        return sum(a.nbytes for a in (*arrays, *more))

    def push(
        self,
        stream: int,
        obs: np.ndarray,
        action: int,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
        truncated: bool,
        next_mask: np.ndarray | None,
        version: int,
    ) -> None:
        """Adds one env step of ``stream`` (an actor's env), with the arguments of
        :meth:`NStepAccumulator.push <soulsai_ray.transitions.NStepAccumulator.push>`.

        ``next_obs`` is stored; ``obs`` only at an episode's first step (later it is the frame
        the previous push stored).
        """
        number = self._open.pop(stream, _NONE)
        if number == _NONE or not self._live(number):
            # an episode's first frame; after an overwritten one, linked to it so that no stack
            # reaches back past it
            number = self._write(obs, number, None)
        slot = number % self.capacity
        self._is_step[slot] = True
        self._actions[slot], self._rewards[slot] = int(action), float(reward)
        self._versions[slot] = int(version)
        if terminated or truncated:
            self._ends[slot] = _TERMINATED if terminated else _TRUNCATED
        following = self._write(next_obs, number, self._mask(next_mask))
        if not (terminated or truncated):
            self._open[stream] = following

    def abandon(self, stream: int) -> None:
        """Forgets ``stream``'s running episode: its open steps never complete a transition."""
        self._open.pop(stream, None)

    def valid(self, slots: np.ndarray) -> np.ndarray:
        """Whether each ring slot starts a transition whose slots are all written and live."""
        slots = np.asarray(slots, np.int64)
        start = self._stamp[slots]
        ok = self._is_step[slots] & self._live(start)
        cur, done = start, np.zeros(len(slots), np.bool_)
        for _ in range(self.n):  # forwards: n steps, or up to the final frame
            ok &= self._live(cur)
            ring = cur % self.capacity
            ended = self._ends[ring] != _GOES_ON
            cur = np.where(done, cur, self._next[ring])
            done |= ended
        ok &= self._live(cur)
        back = start
        for _ in range(self.stack - 1):  # backwards: the stacked frames
            link = self._prev[back % self.capacity]
            back = np.where(link == _NONE, back, link)
            ok &= self._live(back)
        return ok

    def transitions(self, slots: np.ndarray) -> TransitionBatch:
        """The transitions starting at ring ``slots`` (all `valid`)."""
        slots = np.asarray(slots, np.int64)
        size = len(slots)
        rewards = np.zeros((size, self.n), np.float64)
        steps = np.zeros(size, np.int64)  # steps covered
        end = np.full(size, _GOES_ON, np.int8)
        cur = slots.copy()
        for i in range(self.n):
            going = end == _GOES_ON
            rewards[going, i] = self._rewards[cur[going]]
            steps[going] += 1
            end[going] = self._ends[cur[going]]
            cur = np.where(going, self._next[cur] % self.capacity, cur)
        returns = np.zeros(size, np.float64)
        for i in range(self.n):  # while the episode goes on, as NStepAccumulator sums forwards
            returns += self.gamma**i * rewards[:, i]
        ended = end != _GOES_ON
        horner = np.zeros(size, np.float64)
        for i in reversed(range(self.n)):  # its flush at the episode's end sums backwards
            horner = np.where(i < steps, rewards[:, i] + self.gamma * horner, horner)
        returns = np.where(ended, horner, returns)
        powers = np.array([self.gamma**k for k in range(self.n + 1)])
        discounts = np.where(end == _TERMINATED, 0.0, powers[steps])
        return TransitionBatch(
            obs=self._stacked(slots),
            actions=self._actions[slots],
            rewards=returns.astype(np.float32),
            next_obs=self._stacked(cur),
            discounts=discounts.astype(np.float32),
            next_masks=self._masks[cur],
            versions=self._versions[slots],
        )

    def sample(self, batch_size: int, beta: float | None = None) -> SampledBatch:
        """Draws ``batch_size`` valid transitions uniformly with replacement (redrawing slots
        that start none: an episode's last frame, transitions still open or partly overwritten).
        ``beta`` is ignored, as by the uniform `ReplayBuffer`.

        Raises:
            ValueError: no valid transition after many draws.
        """
        live = min(self.total_written, self.capacity)
        chosen = np.zeros(0, np.int64)
        for _ in range(100 if live else 0):
            draw = self._rng.integers(0, live, size=2 * batch_size)
            chosen = np.concatenate([chosen, draw[self.valid(draw)]])
            if len(chosen) >= batch_size:
                chosen = chosen[:batch_size]
                return SampledBatch(
                    self.transitions(chosen), chosen, np.ones(batch_size, np.float32)
                )
        raise ValueError("the replay holds no complete transition to sample")

    def _write(self, frame: np.ndarray, previous: int, mask: np.ndarray | None) -> int:
        """Writes a frame (and the valid actions at it, all if None) into the next slot, linked
        after slot number ``previous``; returns its slot number."""
        number = self.total_written
        slot = number % self.capacity
        self._frames[slot] = frame
        self._masks[slot] = True if mask is None else mask
        self._stamp[slot], self._next[slot], self._prev[slot] = number, _NONE, previous
        self._ends[slot], self._is_step[slot] = _GOES_ON, False
        self.total_written += 1
        if previous != _NONE and self._live(previous):
            self._next[previous % self.capacity] = number
        return number

    def _live(self, numbers: np.ndarray | int) -> np.ndarray:
        """Whether slot numbers are written and not yet overwritten."""
        numbers = np.asarray(numbers)
        oldest = self.total_written - self.capacity
        return (numbers != _NONE) & (numbers < self.total_written) & (numbers >= oldest)

    def _stacked(self, slots: np.ndarray) -> np.ndarray:
        """The frames of ring ``slots`` with the ``stack - 1`` before each (oldest first)."""
        frames = [self._frames[slots]]
        back = slots
        for _ in range(self.stack - 1):
            link = self._prev[back]
            back = np.where(link == _NONE, back, link % self.capacity)
            frames.insert(0, self._frames[back])
        return frames[0] if self.stack == 1 else np.concatenate(frames, axis=-1)

    def _mask(self, mask: np.ndarray | None) -> np.ndarray:
        if mask is None:
            return np.ones(self.num_actions, np.bool_)
        return np.asarray(mask, np.bool_)
