"""Run metrics: TensorBoard scalars, episode statistics, live console progress, summary and plot.

Typical order of calls on the driver::

    telemetry = Telemetry(run_dir, window=100, total_env_steps=cfg.total_env_steps)
    while training:
        telemetry.log_episodes(env_steps, returns, lengths)
        telemetry.log_scalars(env_steps, {"train/loss": loss, "train/epsilon": eps})
        telemetry.update_console(env_steps, {"return_mean": telemetry.return_mean, "loss": loss})
    telemetry.write_summary(run_dir / "summary.json", summary)
    telemetry.plot_learning_curve(run_dir / "learning_curve.png", title="DQN LunarLander")
    telemetry.close()
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from soulsai_ray.checkpoint import write_text_atomic
from soulsai_ray.curve import DEFAULT_CURVE_POINTS, LearningCurve, rolling_mean

_clock = time.monotonic  # module-level so tests can control time
_PLAIN_LINE_INTERVAL_S = 10.0
_BAR_REFRESH_INTERVAL_S = 0.25


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


def to_json_safe(value: Any) -> Any:
    """Converts a value for strict JSON: NaN/inf become None, numpy values become python ones.

    Args:
        value: Nested mappings, sequences, numbers, numpy scalars/arrays, paths, strings.

    Returns:
        The same structure built from dict, list, str, int, float, bool and None only.
    """
    if isinstance(value, Mapping):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | np.generic):
        return to_json_safe(value.tolist())
    if isinstance(value, list | tuple):
        return [to_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


class Telemetry:
    """Collects run metrics: TensorBoard scalars, episode statistics, a live console line, and the end-of-run summary + learning-curve plot.

    Args:
        run_dir: The run directory; TensorBoard events go to ``run_dir / tb_subdir``.
        window: Number of recent episodes ``return_mean`` averages over.
        console: Whether `update_console` prints anything.
        total_env_steps: Length of the run, for the progress bar; None if unknown.
        tb_subdir: Sub-folder of ``run_dir`` for TensorBoard events.
        curve_points: Most points the learning curve keeps (see `LearningCurve`).
    """

    def __init__(
        self,
        run_dir: Path,
        window: int = 100,
        console: bool = True,
        total_env_steps: int | None = None,
        tb_subdir: str = "tb",
        curve_points: int = DEFAULT_CURVE_POINTS,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.run_dir = Path(run_dir)
        self.window = window
        self.console = console
        self.total_env_steps = total_env_steps
        self._writer: SummaryWriter | None = SummaryWriter(log_dir=str(self.run_dir / tb_subdir))
        self._recent_returns: deque[float] = deque(maxlen=window)
        self._curve = LearningCurve(curve_points)
        self._console_line: _ConsoleLine | None = None

    def log_episodes(self, env_step: int, returns: Sequence[float], lengths: Sequence[int]) -> None:
        """Records finished episodes.

        Writes ``episode/return`` and ``episode/length`` per episode and, when there is at least
        one episode, ``episode/return_mean`` over the window; all at step ``env_step``.

        Args:
            env_step: Total env steps when the episodes were reported.
            returns: Undiscounted return of each finished episode.
            lengths: Length of each finished episode, in the same order.
        """
        if len(returns) != len(lengths):
            raise ValueError(f"got {len(returns)} returns but {len(lengths)} lengths")
        writer = self._open_writer()
        for ret, length in zip(returns, lengths, strict=True):
            writer.add_scalar("episode/return", float(ret), env_step)
            writer.add_scalar("episode/length", int(length), env_step)
            self._recent_returns.append(float(ret))
        self._curve.extend(np.full(len(returns), int(env_step)), returns)
        if len(returns) > 0:
            writer.add_scalar("episode/return_mean", self.return_mean, env_step)

    def log_scalars(self, step: int, scalars: Mapping[str, float | int | None]) -> None:
        """Writes scalars at ``step``; None and non-finite values are skipped.

        Args:
            step: The x-axis value, usually total env steps.
            scalars: Tag to value, e.g. ``{"train/loss": 0.01, "train/epsilon": 0.1}``.
        """
        writer = self._open_writer()
        for tag, value in scalars.items():
            if value is None or not math.isfinite(float(value)):
                continue
            writer.add_scalar(tag, float(value), step)

    @property
    def return_mean(self) -> float | None:
        """Mean of the last ``window`` episode returns, None before the first episode."""
        if not self._recent_returns:
            return None
        return float(np.mean(self._recent_returns))

    @property
    def episodes(self) -> int:
        """Total number of episodes logged (restored ones included)."""
        return self._curve.episodes

    def curve_state(self) -> dict[str, np.ndarray]:
        """The learning curve and recent returns as arrays, for `restore_curve` after a resume.

        Returns:
            `LearningCurve.state` plus ``recent_returns``, the last ``window`` episode returns.
        """
        recent = np.array(self._recent_returns, dtype=np.float64)
        return {**self._curve.state(), "recent_returns": recent}

    def restore_curve(self, curve: Mapping[str, Any] | Sequence[tuple[int, float]]) -> None:
        """Continues a resumed run with its earlier learning curve, without re-logging it.

        Args:
            curve: A `curve_state` dict, or ``(env_step, return)`` pairs, one per episode (the
                form older checkpoints hold). A dict without ``recent_returns`` starts the
                return mean from the newest points, each repeated by its episode count.
        """
        if isinstance(curve, Mapping):
            self._curve.load(curve)
            recent = curve.get("recent_returns")
        else:
            pairs = np.asarray(curve, dtype=np.float64).reshape(-1, 2)
            self._curve.clear()
            self._curve.extend(pairs[:, 0], pairs[:, 1])
            recent = pairs[-self.window :, 1]
        if recent is None:
            recent = _newest_returns(self._curve, self.window)
        self._recent_returns.clear()
        self._recent_returns.extend(float(r) for r in np.asarray(recent).reshape(-1))

    def learning_curve(self) -> list[tuple[int, float]]:
        """The learning curve as ``(env_step, mean return)`` points, oldest first.

        Until the curve holds `LearningCurve.max_points` episodes, each point is one episode.
        """
        return self._curve.points()

    def update_console(self, env_steps: int, fields: Mapping[str, Any]) -> None:
        """Updates the live progress line.

        On a terminal this is a progress bar with steps/s and the fields; otherwise a plain line
        is printed at most every 10 s so that log files stay readable.

        Args:
            env_steps: Total env steps so far.
            fields: Values to show, e.g. ``{"return_mean": 123.4, "loss": 0.0123}``.
        """
        if self._writer is None:
            raise RuntimeError("Telemetry is closed")
        if not self.console:
            return
        if self._console_line is None:
            self._console_line = _ConsoleLine(sys.stdout, self.total_env_steps, env_steps)
        self._console_line.update(env_steps, fields)

    def write_summary(self, path: Path, summary: Mapping[str, Any]) -> None:
        """Writes ``summary`` as JSON atomically; NaN and infinite numbers become null.

        Args:
            path: Destination file, e.g. ``run_dir / "summary.json"``.
            summary: Nested mapping of results (numpy values are converted).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(to_json_safe(summary), indent=2, allow_nan=False)
        write_text_atomic(path, text + "\n")

    def plot_learning_curve(self, path: Path, title: str = "", target: float | None = None) -> None:
        """Saves a PNG of episode returns and their rolling mean against env steps.

        Args:
            path: Destination PNG file.
            title: Plot title.
            target: If given, drawn as a dashed horizontal line (e.g. the solve threshold).
        """
        fig = Figure(figsize=(8, 4.5), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        _draw_curve(ax, self._curve.state(), self.window)
        if target is not None:
            ax.axhline(
                target, color="tab:red", linestyle="--", linewidth=1, label=f"target {target:g}"
            )
        ax.set_xlabel("env steps")
        ax.set_ylabel("episode return")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format="png")
        tmp.replace(path)

    def close(self) -> None:
        """Flushes and closes the TensorBoard writer and the console line; safe to call twice."""
        if self._console_line is not None:
            self._console_line.close()
            self._console_line = None
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open_writer(self) -> SummaryWriter:
        if self._writer is None:
            raise RuntimeError("Telemetry is closed")
        return self._writer


def _newest_returns(curve: LearningCurve, window: int) -> np.ndarray:
    """The newest ``window`` returns, each point's mean repeated by its episode count."""
    state = curve.state()
    newest = np.repeat(state["returns"][-window:], state["counts"][-window:])
    return newest[-window:]


def _draw_curve(ax: Any, curve: Mapping[str, np.ndarray], window: int) -> None:
    """Draws returns and their rolling mean over ``window`` episodes, or a note when there are none.

    When the points of a long run each stand for several episodes, the thin line shows their
    means and the rolling mean covers at least ``window`` episodes.
    """
    if not len(curve["steps"]):
        ax.text(0.5, 0.5, "no finished episodes", ha="center", va="center", transform=ax.transAxes)
        return
    steps, returns, counts = curve["steps"], curve["returns"], curve["counts"]
    per_point = int(counts.max())
    label = "episode return" if per_point == 1 else f"mean return of {per_point} episodes"
    ax.plot(steps, returns, linewidth=0.6, alpha=0.35, color="tab:blue", label=label)
    ax.plot(
        steps,
        rolling_mean(returns, window, counts),
        linewidth=2,
        color="tab:blue",
        label=f"mean of last {max(window, per_point)}",
    )


class _ConsoleLine:
    """One live progress line: a tqdm bar on a terminal, throttled plain lines otherwise."""

    def __init__(self, stream: TextIO, total: int | None, start_steps: int) -> None:
        self._stream = stream
        self._total = total
        self._bar: tqdm | None = None
        if _is_tty(stream):
            self._bar = tqdm(
                total=total,
                initial=start_steps,
                unit="step",
                unit_scale=True,
                dynamic_ncols=True,
                mininterval=_BAR_REFRESH_INTERVAL_S,
                file=stream,
            )
        self._last_refresh = -math.inf
        self._last_steps = start_steps
        self._last_time = _clock()

    def update(self, env_steps: int, fields: Mapping[str, Any]) -> None:
        if self._bar is not None:
            self._update_bar(env_steps, fields)
        else:
            self._maybe_print(env_steps, fields)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _update_bar(self, env_steps: int, fields: Mapping[str, Any]) -> None:
        assert self._bar is not None
        self._bar.set_postfix_str(format_fields(fields), refresh=False)
        delta = env_steps - self._bar.n
        if delta > 0:
            self._bar.update(delta)  # refreshes itself at most every mininterval
        elif _clock() - self._last_refresh >= _BAR_REFRESH_INTERVAL_S:
            self._bar.refresh()
            self._last_refresh = _clock()

    def _maybe_print(self, env_steps: int, fields: Mapping[str, Any]) -> None:
        now = _clock()
        first = self._last_refresh == -math.inf
        if not first and now - self._last_refresh < _PLAIN_LINE_INTERVAL_S:
            return
        elapsed = now - self._last_time
        rate = (env_steps - self._last_steps) / elapsed if elapsed > 0 and not first else None
        print(self._plain_line(env_steps, rate, fields), file=self._stream, flush=True)
        self._last_refresh = now
        self._last_steps, self._last_time = env_steps, now

    def _plain_line(self, env_steps: int, rate: float | None, fields: Mapping[str, Any]) -> str:
        progress = f"steps {env_steps:,}"
        if self._total:
            progress += f"/{self._total:,} ({100.0 * env_steps / self._total:.1f}%)"
        parts = [progress]
        if rate is not None:
            parts.append(f"{rate:.1f} steps/s")
        if fields:
            parts.append(format_fields(fields))
        return " | ".join(parts)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
