"""When the DQN learner publishes weights: every publish_every updates, at most once per
publish_min_interval_s, so a lag in versions is a lag in wall time at any learner speed."""

from __future__ import annotations

import pytest

from soulsai_ray.actors.shell import next_version
from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.algos.publish import PublishSchedule
from soulsai_ray.typed_config import ConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _publish_times(updates_per_s: float, seconds: float, every: int, floor: float) -> list[int]:
    """Updates at which a learner making ``updates_per_s`` publishes during ``seconds``."""
    clock = Clock()
    schedule = PublishSchedule(every, floor, clock)
    schedule.published(0)
    published = []
    for update in range(1, int(updates_per_s * seconds) + 1):
        clock.now = 100.0 + update / updates_per_s
        if schedule.due(update):
            schedule.published(update)
            published.append(update)
    return published


def test_a_slow_learner_publishes_every_publish_every_updates():
    # 40 updates/s (one game PC at 10 steps/s, 4 updates per step): the floor never binds
    assert _publish_times(40, 10, every=25, floor=0.25) == list(range(25, 401, 25))


@pytest.mark.parametrize("updates_per_s", [320, 1280, 5000])
def test_a_fast_learner_publishes_at_most_four_versions_a_second(updates_per_s):
    published = _publish_times(updates_per_s, 10, every=25, floor=0.25)
    assert 39 <= len(published) <= 40  # 10 s at 4 per second, whatever the update rate
    gaps = [b - a for a, b in zip([0, *published], published, strict=False)]
    assert min(gaps) >= max(25, updates_per_s * 0.25 - 1)


def test_no_floor_publishes_on_update_count_alone():
    assert _publish_times(5000, 0.1, every=50, floor=0.0) == list(range(50, 501, 50))


def test_the_floor_counts_from_the_last_publication_of_any_kind():
    """A republish (after a restart) or the first publish also starts the interval."""
    clock = Clock()
    schedule = PublishSchedule(10, 1.0, clock)
    schedule.published(0)
    clock.now += 0.5
    assert not schedule.due(50)  # enough updates, too soon
    clock.now += 0.5
    assert schedule.due(50)
    schedule.published(50)
    assert not schedule.due(55)  # too few updates since, however long ago
    clock.now += 10
    assert not schedule.due(59) and schedule.due(60)


@pytest.mark.parametrize(
    ("key", "value"), [("publish_min_interval_s", -1.0), ("weight_sync_max_s", 0.0)]
)
def test_bad_publication_and_sync_intervals_name_their_key(key, value):
    with pytest.raises(ConfigError, match=f"algo.{key}"):
        DQNConfig(**{key: value}).validate("algo")


@pytest.mark.parametrize(
    ("current", "floor", "expected"), [(5, 3, 6), (5, 5, 6), (5, 9, 10), (0, -1, 1)]
)
def test_a_republish_goes_above_the_learner_and_every_version_handed_out(current, floor, expected):
    """Both learner shells republish after a restart with this rule (DQN's floor includes the
    weight store's version)."""
    assert next_version(current, floor) == expected
