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

import errno
import json
import math
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from soulsai_ray import metric_names as mn
from soulsai_ray.checkpoint_folder import write_text_atomic
from soulsai_ray.console import ConsoleProgress
from soulsai_ray.curve import DEFAULT_CURVE_POINTS, LearningCurve, rolling_mean
from soulsai_ray.episode_window import EpisodeWindow
from soulsai_ray.run_writes import WriteGuard
from soulsai_ray.scalar_writer import ScalarWriter

_clock = time.monotonic  # module-level so tests can control time

TB_RETRY_S = 30.0
"""Seconds between attempts to open a new TensorBoard event file after a failed write."""


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
        time_limit_s: Wall-clock limit of the run from now, for the console's ETA; None if
            unlimited.
        writes: The run's guarded write path; TensorBoard and the console go through it. A
            failed TensorBoard write drops that event file's writer, and a new event file is
            opened `TB_RETRY_S` later (TensorBoard reads every event file of the folder).
    """

    def __init__(
        self,
        run_dir: Path,
        window: int = 100,
        console: bool = True,
        total_env_steps: int | None = None,
        tb_subdir: str = "tb",
        curve_points: int = DEFAULT_CURVE_POINTS,
        time_limit_s: float | None = None,
        writes: WriteGuard | None = None,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.run_dir = Path(run_dir)
        self.window = window
        self.console = console
        self.total_env_steps = total_env_steps
        self.time_limit_s = time_limit_s
        self._start_time = _clock()
        self.writes = writes or WriteGuard()
        _quiet_event_writer_threads()
        self._tb_dir = self.run_dir / tb_subdir
        self._writer: ScalarWriter | None = None
        self._closed = False
        self._tb_retry_at = -math.inf
        self._with_writer(lambda writer: None)  # the event file exists from the start
        self._recent = EpisodeWindow(window)
        self._curve = LearningCurve(curve_points)
        self._console_line: ConsoleProgress | None = None

    def log_episodes(
        self,
        env_step: int,
        returns: Sequence[float],
        lengths: Sequence[int],
        metrics: Sequence[Mapping[str, float]] | None = None,
    ) -> None:
        """Records finished episodes.

        Writes ``episode/return``, ``episode/length`` and ``episode/<name>`` for each episode
        metric per episode and, when there is at least one episode, the window's means
        (``episode/return_mean``, ``episode/length_mean``, ``episode/win_rate``, ...; see
        `EpisodeWindow.means`); all at step ``env_step``.

        Args:
            env_step: Total env steps when the episodes were reported.
            returns: Undiscounted return of each finished episode.
            lengths: Length of each finished episode, in the same order.
            metrics: Each episode's reported numbers (``info["episode_metrics"]``), if any.
        """
        metrics = [{}] * len(returns) if metrics is None else metrics
        if not len(returns) == len(lengths) == len(metrics):
            raise ValueError(
                f"got {len(returns)} returns, {len(lengths)} lengths and {len(metrics)} metrics"
            )
        self._check_open()
        scalars: list[tuple[str, float]] = []
        for ret, length, numbers in zip(returns, lengths, metrics, strict=True):
            scalars += [(mn.EPISODE_RETURN, float(ret)), (mn.EPISODE_LENGTH, int(length))]
            scalars += [(mn.episode_metric(k), float(v)) for k, v in numbers.items()]
            self._recent.add(ret, length, numbers)
        self._curve.extend(np.full(len(returns), int(env_step)), returns)
        if len(returns) > 0:
            scalars += list(self.episode_means().items())
        self._with_writer(lambda writer: _add_scalars(writer, scalars, env_step))

    def log_scalars(self, step: int, scalars: Mapping[str, float | int | None]) -> None:
        """Writes scalars at ``step``; None and non-finite values are skipped.

        Args:
            step: The x-axis value, usually total env steps.
            scalars: Tag to value, e.g. ``{"train/loss": 0.01, "train/epsilon": 0.1}``.
        """
        self._check_open()
        finite = [
            (tag, float(value))
            for tag, value in scalars.items()
            if value is not None and math.isfinite(float(value))
        ]
        self._with_writer(lambda writer: _add_scalars(writer, finite, step))

    @property
    def return_mean(self) -> float | None:
        """Mean of the last ``window`` episode returns, None before the first episode."""
        return self._recent.return_mean

    def episode_means(self) -> dict[str, float]:
        """Means over the window: ``episode/return_mean``, ``episode/length_mean``,
        ``episode/win_rate`` and the other episode metrics (empty before the first episode)."""
        return self._recent.means()

    @property
    def window_episodes(self) -> int:
        """Episodes in the window (at most ``window``)."""
        return len(self._recent.returns)

    @property
    def episodes(self) -> int:
        """Total number of episodes logged (restored ones included)."""
        return self._curve.episodes

    def curve_state(self) -> dict[str, np.ndarray]:
        """The learning curve and recent returns as arrays, for `restore_curve` after a resume.

        Returns:
            `LearningCurve.state` plus `EpisodeWindow.state`: the last ``window`` episode
            returns (``recent_returns``), lengths and episode metrics.
        """
        return {**self._curve.state(), **self._recent.state()}

    def restore_curve(self, curve: Mapping[str, Any] | Sequence[tuple[int, float]]) -> None:
        """Continues a resumed run with its earlier learning curve, without re-logging it.

        Args:
            curve: A `curve_state` dict, or ``(env_step, return)`` pairs, one per episode (the
                form older checkpoints hold). A dict without ``recent_returns`` starts the
                return mean from the newest points, each repeated by its episode count.
        """
        window: dict[str, Any] = {}
        if isinstance(curve, Mapping):
            self._curve.load(curve)
            window = dict(curve)
        else:
            pairs = np.asarray(curve, dtype=np.float64).reshape(-1, 2)
            self._curve.clear()
            self._curve.extend(pairs[:, 0], pairs[:, 1])
            window["recent_returns"] = pairs[-self.window :, 1]
        if window.get("recent_returns") is None:
            window["recent_returns"] = _newest_returns(self._curve, self.window)
        self._recent.load(window)

    def learning_curve(self) -> list[tuple[int, float]]:
        """The learning curve as ``(env_step, mean return)`` points, oldest first.

        Until the curve holds `LearningCurve.max_points` episodes, each point is one episode.
        """
        return self._curve.points()

    def update_console(self, env_steps: int, fields: Mapping[str, Any]) -> None:
        """Updates the live progress line.

        On a terminal this is a live display with a progress bar, steps/s, ETA and the fields;
        otherwise a plain line is printed at most every 10 s (see `ConsoleProgress`).

        Args:
            env_steps: Total env steps so far.
            fields: Values to show, e.g. ``{"return_mean": 123.4, "loss": 0.0123}``.
        """
        self._check_open()
        if not self.console:
            return
        if self._console_line is None:
            self._console_line = ConsoleProgress(
                sys.stdout,
                self.total_env_steps,
                env_steps,
                time_limit_s=self.time_limit_s,
                clock=_clock,
                start_time=self._start_time,
            )
        line = self._console_line
        self.writes.attempt("console", lambda: line.update(env_steps, fields))

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
        """Flushes and closes the TensorBoard writer and the console line; safe to call twice.

        A failed flush is counted like any TensorBoard write.
        """
        self._closed = True
        if self._console_line is not None:
            line, self._console_line = self._console_line, None
            self.writes.attempt("console", line.close)
        if self._writer is not None:
            self._with_writer(lambda writer: writer.close())
            self._writer = None

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("Telemetry is closed")

    def _with_writer(self, write: Any) -> None:
        """Runs ``write(writer)`` through the guard, opening an event file if there is none.

        After a failure the writer is dropped, not closed: its writer thread has died, and
        closing would wait on that thread's queue. While the next attempt is not yet due
        (`TB_RETRY_S`), the scalars are dropped and counted.
        """
        if self._writer is None and _clock() < self._tb_retry_at:
            self.writes.failed("tensorboard", None)
            return

        def run() -> None:
            if self._writer is not None and not self._tb_dir.is_dir():  # surfaces at once, not
                # at the writer's next flush
                raise FileNotFoundError(errno.ENOENT, "folder deleted", str(self._tb_dir))
            if self._writer is None:
                self._writer = ScalarWriter(log_dir=str(self._tb_dir))
            write(self._writer)

        if not self.writes.attempt("tensorboard", run):
            self._writer = None
            self._tb_retry_at = _clock() + TB_RETRY_S


def _quiet_event_writer_threads() -> None:
    """Keeps a TensorBoard writer thread's failed write (counted by the run's `WriteGuard` when
    it surfaces) from printing a traceback; other threads' errors print as before."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    previous = threading.excepthook
    if getattr(previous, "quiets_event_writers", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.thread, _AsyncWriterThread) and isinstance(args.exc_value, OSError):
            return
        previous(args)

    hook.quiets_event_writers = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _add_scalars(writer: ScalarWriter, scalars: Sequence[tuple[str, float]], step: int) -> None:
    for tag, value in scalars:
        writer.add_scalar(tag, value, step)


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
