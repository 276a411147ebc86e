"""The storage of :class:`~soulsai_ray.frame_replay.FrameReplay`: a ring of frame slots linked
into episodes, and the n-step transitions and frame stacks rebuilt from them.

Slot number k (counting every slot ever written) lives in ring slot k % capacity. Each slot
holds a frame and the valid actions at it, links to the next and previous slot of its episode,
and, where a step acted on the frame, the step's action, reward, policy version, the n its
transition sums over (its horizon, at most the ring's n) and whether the episode ended after it.
Its state says whether a transition starts there: none (a fragment's earlier frames, an
episode's last frame, a stale step), one still waiting for later steps, or a complete one. A
transition's ``next_obs`` is the frame its horizon links on (or the final frame), its stacked
frames the k - 1 links back (the oldest frame repeated before it).
"""

from __future__ import annotations

import numpy as np

from soulsai_ray.observations import ObsSpec
from soulsai_ray.transitions import TransitionBatch

NONE = -1
"""A link to no slot: the episode goes on beyond what was written, or began here."""
_GOES_ON, _TERMINATED, _TRUNCATED = 0, 1, 2
"""How a step slot's episode continues after it (``_ends``)."""
_FRAME, _OPEN, _DONE = 0, 1, 2
"""What starts at a slot (``_state``): no transition, one still open, a complete one."""
ARRAYS = (
    "frames", "masks", "actions", "rewards", "versions", "horizons", "ends", "state", "stamp",
    "next", "prev",
)  # fmt: skip
"""The per-slot arrays (attributes ``_<name>``), as a saved state names them."""


class FrameRing:
    """Frame slots linked into episodes, and the transitions they hold.

    Args:
        capacity: Slots.
        frame: One frame (a uint8 image [H, W, C]; vectors work the same way).
        num_actions: Size of the discrete action space.
        n: The most steps a transition sums over (a step's horizon is at most n).
        gamma: Discount factor.
        stack: Frames per observation, stacked along the last axis, oldest first.
    """

    def __init__(
        self, capacity: int, frame: ObsSpec, num_actions: int, n: int, gamma: float, stack: int
    ) -> None:
        self.capacity, self.num_actions = capacity, num_actions
        self.frame, self.n, self.gamma, self.stack = frame, n, gamma, stack
        self.total_written = 0
        """Slots ever written, overwritten ones included."""
        self.complete = 0
        """Live slots where a complete transition starts."""
        self._frames = frame.zeros(capacity)
        self._masks = np.ones((capacity, num_actions), np.bool_)
        self._actions = np.zeros(capacity, np.int64)
        self._rewards = np.zeros(capacity, np.float64)  # summed in float64, as NStepAccumulator
        self._versions = np.zeros(capacity, np.int64)
        self._horizons = np.full(capacity, n, np.int32)
        self._ends = np.zeros(capacity, np.int8)
        self._state = np.zeros(capacity, np.int8)
        self._stamp = np.full(capacity, NONE, np.int64)
        """Absolute number of the slot's content: whether a link still points at it."""
        self._next = np.full(capacity, NONE, np.int64)
        self._prev = np.full(capacity, NONE, np.int64)

    @staticmethod
    def bytes_for(capacity: int, frame: ObsSpec, num_actions: int) -> int:
        """Bytes of a ring of ``capacity`` slots of ``frame`` (none allocated)."""
        words = 6 * np.dtype(np.int64).itemsize + 4 + 2  # actions ... prev; horizons; ends, state
        return capacity * (frame.nbytes + num_actions + words)

    @property
    def nbytes(self) -> int:
        """Bytes of storage."""
        return sum(getattr(self, f"_{name}").nbytes for name in ARRAYS)

    @property
    def written(self) -> int:
        """Ring slots that hold data: ``min(total_written, capacity)``."""
        return min(self.total_written, self.capacity)

    def write(self, frame: np.ndarray, previous: int, mask: np.ndarray | None) -> int:
        """Writes a frame (and the valid actions at it, all if None) into the next slot, linked
        after slot number ``previous``; returns its slot number."""
        number = self.total_written
        slot = number % self.capacity
        self.complete -= int(self._state[slot] == _DONE)
        self._frames[slot] = frame
        self._masks[slot] = True if mask is None else mask
        self._stamp[slot], self._next[slot], self._prev[slot] = number, NONE, previous
        self._ends[slot], self._state[slot] = _GOES_ON, _FRAME
        self.total_written += 1
        if previous != NONE and self.live(previous):
            self._next[previous % self.capacity] = number
        return number

    def set_step(
        self,
        number: int,
        step: tuple[int, float, int, int],
        end: tuple[bool, bool],
        keep: bool,
    ) -> None:
        """Stores the step (action, reward, version, horizon in [1, n]) that acted on slot
        ``number`` (live): ``end`` is (terminated, truncated) after it; a step not kept (stale)
        starts no transition."""
        slot = number % self.capacity
        action, reward, version, horizon = step
        self._actions[slot], self._rewards[slot] = int(action), float(reward)
        self._versions[slot], self._horizons[slot] = int(version), int(horizon)
        terminated, truncated = end
        self._ends[slot] = _TERMINATED if terminated else _TRUNCATED if truncated else _GOES_ON
        self._state[slot] = _OPEN if keep else _FRAME

    def horizon(self, number: int) -> int:
        """Steps the transition at slot number ``number`` (live, a step's) sums over."""
        return int(self._horizons[number % self.capacity])

    def close_step(self, number: int, complete: bool) -> None:
        """Ends the wait of an open step's transition: ``complete`` (its n steps or its
        episode's end are written), or never (its episode was given up)."""
        slot = number % self.capacity
        if self.live(number) and self._state[slot] == _OPEN:
            self._state[slot] = _DONE if complete else _FRAME
            self.complete += int(complete)

    def live(self, numbers: np.ndarray | int) -> np.ndarray:
        """Whether slot numbers are written and not yet overwritten."""
        numbers = np.asarray(numbers)
        oldest = self.total_written - self.capacity
        return (numbers != NONE) & (numbers < self.total_written) & (numbers >= oldest)

    def readers(self, number: int) -> np.ndarray:
        """Ring slots of the transitions that read slot number ``number``'s frame as their own
        or a stacked one: it and the ``stack - 1`` slots linked after it that are written."""
        slots = []
        for _ in range(self.stack):
            if not self.live(number):
                break
            slots.append(number % self.capacity)
            number = int(self._next[number % self.capacity])
        return np.array(slots, np.int64)

    def valid(self, slots: np.ndarray) -> np.ndarray:
        """Whether each ring slot starts a transition whose slots are all written and live."""
        slots = np.asarray(slots, np.int64)
        start = self._stamp[slots]
        # complete: its later slots are written, and newer than its own, so live with it
        ok = (self._state[slots] == _DONE) & self.live(start)
        back = start
        for _ in range(self.stack - 1):  # backwards: the stacked frames
            link = self._prev[back % self.capacity]
            back = np.where(link == NONE, back, link)
            ok &= self.live(back)
        return ok

    def transitions(self, slots: np.ndarray) -> TransitionBatch:
        """The transitions starting at ring ``slots`` (all `valid`)."""
        slots = np.asarray(slots, np.int64)
        size = len(slots)
        rewards = np.zeros((size, self.n), np.float64)
        steps = np.zeros(size, np.int64)  # steps covered
        end = np.full(size, _GOES_ON, np.int8)
        horizons = self._horizons[slots]
        cur = slots.copy()
        for i in range(self.n):
            going = (end == _GOES_ON) & (i < horizons)
            rewards[going, i] = self._rewards[cur[going]]
            steps[going] += 1
            end[going] = self._ends[cur[going]]
            cur = np.where(going, self._next[cur] % self.capacity, cur)
        returns = np.zeros(size, np.float64)
        for i in range(self.n):  # over its horizon, as NStepAccumulator sums forwards
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

    def arrays(self) -> dict[str, np.ndarray]:
        """Copies of the written slots' arrays, by `ARRAYS` name."""
        return {name: getattr(self, f"_{name}")[: self.written].copy() for name in ARRAYS}

    def load_arrays(self, arrays: dict[str, np.ndarray], total_written: int) -> None:
        """Restores `arrays` saved after ``total_written`` slots into this (empty) ring.

        Raises:
            ValueError: an array of another dtype or shape than such a ring's, or a horizon
                outside [1, n].
        """
        written = min(total_written, self.capacity)
        for name in ARRAYS:
            array, own = np.asarray(arrays[name]), getattr(self, f"_{name}")
            if array.dtype != own.dtype or array.shape != (written, *own.shape[1:]):
                raise ValueError(
                    f"saved {name} is {array.dtype}{list(array.shape)}, expected "
                    f"{own.dtype}{[written, *own.shape[1:]]} for {total_written} slots written"
                )
        horizons = np.asarray(arrays["horizons"])
        if written and not 1 <= horizons.min() <= horizons.max() <= self.n:
            raise ValueError(
                f"saved horizons span [{horizons.min()}, {horizons.max()}], n={self.n}"
            )
        for name in ARRAYS:
            getattr(self, f"_{name}")[:written] = arrays[name]
        self.total_written = total_written
        self.complete = int(np.count_nonzero(self._state == _DONE))

    def _stacked(self, slots: np.ndarray) -> np.ndarray:
        """The frames of ring ``slots`` with the ``stack - 1`` before each (oldest first)."""
        frames = [self._frames[slots]]
        back = slots
        for _ in range(self.stack - 1):
            link = self._prev[back]
            back = np.where(link == NONE, back, link % self.capacity)
            frames.insert(0, self._frames[back])
        return frames[0] if self.stack == 1 else np.concatenate(frames, axis=-1)
