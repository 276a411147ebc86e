"""What a chaos soak (:mod:`soulsai_bench.soak`) records, and the table it prints at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RECOVERY_TIMEOUT_S = 240.0
"""Longest wait for the run to recover from one fault; a longer one counts as a hang."""


@dataclass
class Fault:
    kind: str
    at_s: float
    recovered_s: float | None = None
    detail: str = ""


@dataclass
class Segment:
    """One driver process: from its start (fresh or resumed) to its end (killed or stopped)."""

    events: Path | None = None
    resumed_from_env_steps: int | None = None
    first_env_steps: int | None = None
    last_env_steps: int = 0
    last_updates: int = 0


@dataclass
class SoakReport:
    faults: list[Fault] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    rss: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def print_report(report: SoakReport) -> None:
    """The soak's table: faults by kind, recovery times, segments, samples, memory."""
    print("\nfault          injected  recovered  recover p50 s  recover max s")
    for kind in sorted({f.kind for f in report.faults}):
        faults = [f for f in report.faults if f.kind == kind]
        times = [f.recovered_s for f in faults if f.recovered_s is not None]
        p50 = f"{np.median(times):.1f}" if times else "-"
        worst = f"{max(times):.1f}" if times else "-"
        print(f"{kind:13s}  {len(faults):8d}  {len(times):9d}  {p50:>13s}  {worst:>13s}")
    hangs = sum(f.recovered_s is None for f in report.faults)
    print(f"not recovered within {RECOVERY_TIMEOUT_S:.0f}s (hangs): {hangs}")
    print("\nsegment  resumed from  first step  last step  updates")
    for i, s in enumerate(report.segments):
        resumed = "-" if s.resumed_from_env_steps is None else str(s.resumed_from_env_steps)
        print(
            f"{i:7d}  {resumed:>12s}  {s.first_env_steps or 0:10d}  {s.last_env_steps:9d}  {s.last_updates:7d}"
        )
    continuous = all(
        s.resumed_from_env_steps is None or (s.first_env_steps or 0) >= s.resumed_from_env_steps
        for s in report.segments
    )
    print(f"counters continuous across resumes: {continuous}")
    c = report.summary.get("counters", {})
    print(
        f"\nfinal: env steps {c.get('env_steps')}, updates {c.get('updates')}, samples accepted "
        f"{c.get('samples_accepted')}, trained {c.get('samples_trained')}, resumes "
        f"{c.get('resumes')}, restarts: rollout {c.get('actor_restarts')} learner "
        f"{c.get('learner_restarts')} replay {c.get('replay_restarts')} weights "
        f"{c.get('weight_store_restarts')}, stalls {c.get('env_stalls')}, failed writes "
        f"{c.get('write_failures')}"
    )
    print("\nprocess  RSS after warm-up MB  RSS at end MB  growth")
    for name, samples in report.rss.items():
        warm = _after_warmup(samples)
        if warm is None:
            continue
        end = samples[-1][1]
        print(f"{name:7s}  {warm:20.1f}  {end:13.1f}  {100 * (end - warm) / warm:5.1f}%")


def _after_warmup(samples: list[tuple[float, float]], warmup_s: float = 120.0) -> float | None:
    """RSS two minutes into the newest incarnation (a restart shows as a drop in RSS)."""
    start = 0
    for i in range(1, len(samples)):
        if samples[i][1] < 0.7 * samples[i - 1][1]:
            start = i
    newest = samples[start:]
    later = [v for t, v in newest if t - newest[0][0] >= warmup_s]
    return later[0] if later else None
