"""The replay ratio of asynchronous DQN, measured against the replay buffer that exists now.

Counting from the run's lifetime totals breaks whenever the buffer starts over (a resume
without a saved buffer, a replay actor restarted empty): the totals say sampling is far ahead,
rollouts pause, and the learner waits for data that never comes. This controller counts only
what the current buffer received and served since it (re)started::

    ratio = ReplayRatio(replay_ratio=128, batch_size=128, learning_starts=2000, slack_steps=2000)
    ratio.reset(held=len(buffer))     # at start, and whenever replay (re)starts
    ratio.inserted(env_steps)         # rollouts sampled this many steps
    ratio.learned(updates)            # the learner did this many updates
    ratio.allowed_updates()           # updates the learner may run now
    ratio.sampling_paused()           # True while sampling leads by more than the slack
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class ReplayRatio:
    """Keeps ``updates * batch_size / env_steps`` near ``replay_ratio`` for the current buffer.

    Args:
        replay_ratio: Sampled transitions per inserted transition.
        batch_size: Transitions per update.
        learning_starts: Transitions the buffer needs before the first update.
        slack_steps: How far (env steps) sampling may lead learning before it pauses; None
            never pauses it.
    """

    replay_ratio: float
    batch_size: int
    learning_starts: int
    slack_steps: int | None
    _inserted: int = 0
    _learned_steps: float = 0.0

    def reset(self, held: int = 0) -> None:
        """Starts over for a buffer that holds ``held`` transitions now.

        Restored transitions count as already learned from: a restored buffer lets learning
        continue at once, without a catch-up burst and without pausing the rollouts.
        """
        self._inserted = held
        self._learned_steps = float(max(held - self.learning_starts, 0))

    def inserted(self, env_steps: int) -> None:
        """Rollouts sampled ``env_steps`` more steps."""
        self._inserted += env_steps

    def learned(self, updates: int) -> None:
        """The learner ran ``updates`` more updates."""
        self._learned_steps += updates * self.batch_size / self.replay_ratio

    def lead_steps(self) -> float:
        """Env steps sampled beyond what learning has consumed (negative before learning starts)."""
        return self._inserted - self.learning_starts - self._learned_steps

    def allowed_updates(self) -> int:
        """Updates the learner may run now without exceeding the ratio."""
        return max(math.floor(self.lead_steps() * self.replay_ratio / self.batch_size), 0)

    def sampling_paused(self) -> bool:
        """True while sampling leads learning by more than the slack."""
        return self.slack_steps is not None and self.lead_steps() > self.slack_steps
