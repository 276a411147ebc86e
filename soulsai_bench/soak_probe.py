"""What the soak reads from outside a run: its TensorBoard progress, checkpoints, live actors
and processes' resident memory (``python -m soulsai_bench soak``)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from soulsai_bench.soak_report import SoakReport
from soulsai_ray import metric_names as mn


def actors_alive(classes: tuple[str, ...]) -> list[dict[str, Any]]:
    """GCS records of the live actors of the given classes."""
    from ray._private import state

    return [
        info
        for info in state.actors().values()
        if info["ActorClassName"] in classes and info["State"] == "ALIVE"
    ]


def rss_mb(pid: int) -> float | None:
    """The resident memory of process ``pid`` in MiB, or None if it is gone."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


class RunReader:
    """Reads a soaked run's progress from its folder: the newest scalars of the current
    driver's TensorBoard file (noting each segment's env steps and updates in ``report``) and
    its newest checkpoint."""

    def __init__(self, run_dir: Path, report: SoakReport) -> None:
        self.run_dir, self.report = run_dir, report
        self.checkpoints = run_dir / "checkpoints"
        self._accumulators: dict[Path, Any] = {}

    def events_files(self) -> list[Path]:
        """The run's TensorBoard event files, oldest first."""
        tb = self.run_dir / "tb"
        return sorted(tb.glob("events.out.tfevents.*")) if tb.is_dir() else []

    def latest_checkpoint(self) -> dict[str, Any] | None:
        """The newest complete checkpoint's metadata, or None."""
        from soulsai_ray.checkpoint import CheckpointManager

        latest = CheckpointManager(self.checkpoints).latest()
        return latest.meta if latest else None

    def count(self, tag: str) -> float:
        """The newest value of the counter ``tag``, 0 before the run has written it."""
        newest = self.scalar(tag)
        return newest[1] if newest else 0.0

    def checkpoint_updates(self) -> int:
        """The update count of the newest complete checkpoint, -1 before the first."""
        latest = self.latest_checkpoint()
        return int(latest["updates"]) if latest else -1

    def scalar(self, tag: str) -> tuple[int, float] | None:
        """(env step, value) of the newest ``tag`` in the current driver's TensorBoard file."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        segment = self.report.segments[-1]
        if segment.events is None:
            return None
        acc = self._accumulators.get(segment.events)
        if acc is None:
            acc = EventAccumulator(str(segment.events), size_guidance={"scalars": 0})
            self._accumulators[segment.events] = acc
        acc.Reload()
        if tag not in acc.Tags()["scalars"]:
            return None
        events = acc.Scalars(tag)
        if tag == mn.PROGRESS_UPDATES:
            segment.first_env_steps = segment.first_env_steps or events[0].step
            segment.last_env_steps, segment.last_updates = events[-1].step, int(events[-1].value)
        return events[-1].step, events[-1].value

    def progress(self) -> tuple[int, int]:
        """(env steps, updates) of the run now."""
        newest = self.scalar(mn.PROGRESS_UPDATES)
        return (newest[0], int(newest[1])) if newest else (0, 0)
