"""Live training progress on the console: a rich display on a terminal, plain lines in log files.

Typical order of calls on the driver::

    progress = ConsoleProgress(sys.stdout, total_env_steps=1_000_000, start_steps=0)
    while training:
        progress.update(env_steps, {"ret": 123.4, "win": 0.5, "loss": 0.0123})
    progress.close()
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

PLAIN_LINE_INTERVAL_S = 10.0
"""Least time between two plain lines, so that log files stay readable."""
REFRESHES_PER_S = 4
"""Most redraws per second of the live display."""
RATE_TIME_CONSTANT_S = 30.0
"""Time constant of the exponential smoothing of steps/s."""
_BAR_WIDTH = 30
_MIN_BAR_WIDTH = 5


def format_number(value: Any) -> str:
    """Formats a metric value compactly for the console (123.4, 0.0123, 0.05, 1.2e-05).

    Args:
        value: A number, None (shown as ``-``) or anything else (shown with ``str``).

    Returns:
        The formatted value.
    """
    if value is None:
        return "-"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if not isinstance(value, float | np.floating):
        return str(value)
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0.0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    if abs(value) >= 1e-3:
        return f"{value:.4g}"
    return f"{value:.2e}"


def format_fields(fields: Mapping[str, Any]) -> str:
    """Formats ``{"loss": 0.0123, "eps": 0.05}`` as ``loss 0.0123, eps 0.05``."""
    return ", ".join(f"{key} {format_number(value)}" for key, value in fields.items())


def format_duration(seconds: float) -> str:
    """Formats a duration as ``45s``, ``2m05s``, ``1h02m03s`` or ``2d03h``.

    Args:
        seconds: The duration; negative values count as 0.

    Returns:
        The formatted duration.
    """
    total = max(0, round(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def eta_seconds(
    env_steps: float,
    total_env_steps: int | None,
    rate: float | None,
    time_left_s: float | None,
) -> float | None:
    """Seconds until the first stop condition is met: the env-step target or the time limit.

    Args:
        env_steps: Env steps so far.
        total_env_steps: Env steps at which training stops; None if there is no such target.
        rate: Env steps per second; None (or <= 0) if not known yet.
        time_left_s: Seconds left of the time limit; None if there is none.

    Returns:
        The earlier of the two estimates, or None when neither can be given.
    """
    candidates = []
    if total_env_steps is not None:
        if env_steps >= total_env_steps:
            candidates.append(0.0)
        elif rate is not None and rate > 0:
            candidates.append((total_env_steps - env_steps) / rate)
    if time_left_s is not None:
        candidates.append(max(0.0, time_left_s))
    return min(candidates) if candidates else None


@dataclass(frozen=True)
class _Snapshot:
    """What the console shows, replaced as a whole on each update (read by the refresh thread)."""

    env_steps: int
    time: float
    rate: float | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


class ConsoleProgress:
    """Shows training progress: env steps, steps/s, ETA and the loop's fields.

    On a terminal this is a rich live display, redrawn in place at most `REFRESHES_PER_S` times a
    second; otherwise a plain line is printed at once and then at most every
    `PLAIN_LINE_INTERVAL_S` seconds.

    Args:
        stream: Where to write, usually ``sys.stdout``.
        total_env_steps: Env steps at which training stops, for the bar and the ETA; None if
            unknown.
        start_steps: Env steps at the start (non-zero after a resume).
        time_limit_s: Seconds of training allowed from ``start_time``; None if unlimited.
        clock: Monotonic clock in seconds.
        start_time: Clock reading the time limit counts from; None means now.
        console: The rich console of the live display; by default one on ``stream`` when it is
            a terminal. Given, it forces the live display (tests use this).
    """

    def __init__(
        self,
        stream: TextIO,
        total_env_steps: int | None,
        start_steps: int,
        time_limit_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        start_time: float | None = None,
        console: Console | None = None,
    ) -> None:
        self._stream = stream
        self._total = total_env_steps
        self._time_limit_s = time_limit_s
        self._clock = clock
        now = clock()
        self._start_time = now if start_time is None else start_time
        self._snapshot = _Snapshot(env_steps=start_steps, time=now)
        self._last_line_time: float | None = None
        if console is None and _is_tty(stream):
            console = Console(file=stream, force_terminal=True)
        self._live: Live | None = None
        if console is not None:
            self._live = Live(
                get_renderable=self._render,
                console=console,
                refresh_per_second=REFRESHES_PER_S,
                transient=False,
            )
            self._live.start(refresh=True)
        self._rerouted = _route_log_handlers_through_live() if self._live is not None else []

    @property
    def rate(self) -> float | None:
        """Smoothed env steps per second, None until two updates are some time apart."""
        return self._snapshot.rate

    def eta_s(self) -> float | None:
        """Seconds until the step target or the time limit is reached, whichever comes first."""
        snap = self._snapshot
        now = self._clock()
        time_left = None
        if self._time_limit_s is not None:
            time_left = self._time_limit_s - (now - self._start_time)
        steps = snap.env_steps
        if snap.rate is not None:
            steps += snap.rate * (now - snap.time)  # so the display counts down between updates
        return eta_seconds(steps, self._total, snap.rate, time_left)

    def update(self, env_steps: int, fields: Mapping[str, Any]) -> None:
        """Records progress and shows it (plain lines only when one is due).

        Args:
            env_steps: Total env steps so far.
            fields: Values to show, e.g. ``{"ret": 123.4, "win": 0.5, "loss": 0.0123}``.
        """
        now = self._clock()
        prev = self._snapshot
        rate = _smoothed_rate(prev, env_steps, now)
        self._snapshot = _Snapshot(env_steps=env_steps, time=now, rate=rate, fields=dict(fields))
        if self._live is None:
            self._maybe_print(now)

    def close(self) -> None:
        """Stops the live display after drawing it a last time; safe to call twice."""
        if self._live is not None:
            for handler, stream in self._rerouted:
                handler.setStream(stream)
            self._rerouted = []
            self._live.stop()
            self._live = None

    def _maybe_print(self, now: float) -> None:
        if self._last_line_time is not None and now - self._last_line_time < PLAIN_LINE_INTERVAL_S:
            return
        print(self._plain_line(), file=self._stream, flush=True)
        self._last_line_time = now

    def _plain_line(self) -> str:
        snap = self._snapshot
        parts = [self._steps_text()]
        if snap.rate is not None:
            parts.append(f"{snap.rate:.1f} steps/s")
        eta = self.eta_s()
        if eta is not None:
            parts.append(f"eta {format_duration(eta)}")
        if snap.fields:
            parts.append(format_fields(snap.fields))
        return " | ".join(parts)

    def _steps_text(self) -> str:
        steps = self._snapshot.env_steps
        text = f"steps {steps:,}"
        if self._total:
            text += f"/{self._total:,} ({100.0 * steps / self._total:.1f}%)"
        return text

    def _render(self) -> RenderableType:
        """The live display: steps and bar, speed and times, fields (called by rich's refresh)."""
        snap = self._snapshot
        steps = self._steps_text()
        progress = Table.grid(padding=(0, 1))
        progress.add_column(no_wrap=True)
        row: list[RenderableType] = [Text(steps, style="bold")]
        if self._total:
            width = self._live.console.width if self._live is not None else _BAR_WIDTH
            progress.add_column(width=max(_MIN_BAR_WIDTH, min(_BAR_WIDTH, width - len(steps) - 1)))
            done = min(snap.env_steps, self._total)
            row.append(ProgressBar(total=self._total, completed=done))
        progress.add_row(*row)
        rate = "-" if snap.rate is None else f"{snap.rate:.1f}"
        eta = self.eta_s()
        speed = Text.assemble(
            f"{rate} steps/s  ",
            (f"eta {'-' if eta is None else format_duration(eta)}", "cyan"),
            (f"  elapsed {format_duration(self._clock() - self._start_time)}", "dim"),
        )
        fields = Text("  ").join(
            Text.assemble((f"{key} ", "dim"), (format_number(value), "bold"))
            for key, value in snap.fields.items()
        )
        return Group(progress, speed, fields)


def _smoothed_rate(prev: _Snapshot, env_steps: int, now: float) -> float | None:
    """Steps/s since ``prev``, blended into ``prev.rate`` by how long ago ``prev`` was."""
    dt = now - prev.time
    if dt <= 0 or env_steps < prev.env_steps:
        return prev.rate
    rate = (env_steps - prev.env_steps) / dt
    if prev.rate is None:
        return rate
    weight = 1.0 - math.exp(-dt / RATE_TIME_CONSTANT_S)
    return prev.rate + weight * (rate - prev.rate)


def _route_log_handlers_through_live() -> list[tuple[logging.StreamHandler, Any]]:
    """Points the root logger's console handlers at the streams the live display redirects.

    Handlers configured before the display started (Hydra's) hold the terminal itself; their
    lines would cut through the display and leave copies of it behind. Through the redirected
    streams they are printed above it. Returns ``(handler, previous stream)`` to undo it.
    """
    terminals = {id(sys.__stdout__): sys.stdout, id(sys.__stderr__): sys.stderr}
    rerouted = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) or not isinstance(
            handler, logging.StreamHandler
        ):
            continue
        target = terminals.get(id(handler.stream))
        if target is not None and target is not handler.stream:
            rerouted.append((handler, handler.setStream(target)))
    return rerouted


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
