"""Draws the learning curves of training runs in one PNG, from their TensorBoard event files.

Usage::

    python scripts/plot.py outputs/run_a outputs/run_b outputs/run_c --out curves.png
    python scripts/plot.py runs/* --metric episode/win_rate --label "lr 1e-3" --label "lr 3e-4"

A run folder holds ``tb/`` (TensorBoard event files) and ``config.yaml`` (the resolved config).
Runs whose configs are equal once ``seed`` is removed form one group, drawn as the mean over its
seeds on a common step grid (the step range every run of the group covers) with a shaded min-max
band. ``--label`` names the groups in order of first appearance; by default a group is named by
the config keys that differ between groups (``algo.lr=0.001``), or by its first run's folder.

Every run must have the metric: a run without it is an error (exit 2) that lists the tags the run
has, so a typo or an unfinished run never silently drops out of the plot. Missing folders or event
files also exit with 2 and one line naming the path.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.backend.event_processing import event_accumulator

DEFAULT_METRIC = "episode/return_mean"
MAX_GRID_POINTS = 2000
"""Most points of a group's common step grid."""
MAX_LABEL_KEYS = 3
"""Most differing config keys a default label names."""
ERROR_EXIT = 2


class PlotError(Exception):
    """A problem with the input; its message is one line naming the path."""


@dataclass(frozen=True)
class Run:
    """One training run: the metric's points and the config that identifies its group.

    Attributes:
        path: The run folder.
        config: The run's config without ``seed``.
        steps: Env steps of the points, increasing.
        values: The metric at ``steps``.
    """

    path: Path
    config: Mapping[str, Any]
    steps: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class GroupCurve:
    """The curve of a group of runs: mean and min-max band over the runs on a common grid."""

    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def read_scalars(run_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads every point of scalar ``tag`` from ``run_dir / "tb"``.

    Args:
        run_dir: The run folder.
        tag: The scalar tag, e.g. ``episode/return_mean``.

    Returns:
        Increasing steps and the value at each; points logged at the same step are averaged.

    Raises:
        PlotError: No event files, or no scalar ``tag`` (the message lists the run's tags).
    """
    tb_dir = run_dir / "tb"
    if not tb_dir.is_dir() or not any(tb_dir.glob("events.out.tfevents.*")):
        raise PlotError(f"{tb_dir}: no TensorBoard event files")
    acc = event_accumulator.EventAccumulator(
        str(tb_dir), size_guidance={event_accumulator.SCALARS: 0}
    )
    acc.Reload()
    tags = sorted(acc.Tags()["scalars"])
    if tag not in tags:
        raise PlotError(f"{run_dir}: no scalar {tag!r}; it has: {', '.join(tags) or 'none'}")
    events = acc.Scalars(tag)
    steps = np.array([e.step for e in events], dtype=np.int64)
    values = np.array([e.value for e in events], dtype=np.float64)
    unique, inverse = np.unique(steps, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(unique))
    return unique, sums / np.bincount(inverse, minlength=len(unique))


def load_run(run_dir: Path, tag: str) -> Run:
    """Loads a run folder: ``config.yaml`` without ``seed`` and the points of ``tag``.

    Raises:
        PlotError: The folder, its config or its event files are missing, or it lacks ``tag``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PlotError(f"{run_dir}: no such run folder")
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise PlotError(f"{config_path}: missing (the run's resolved config)")
    try:
        config = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as err:
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PlotError(f"{config_path}: not valid YAML ({problem})") from err
    if not isinstance(config, dict):
        raise PlotError(f"{config_path}: not a mapping")
    config.pop("seed", None)
    steps, values = read_scalars(run_dir, tag)
    return Run(path=run_dir, config=config, steps=steps, values=values)


def group_runs(runs: Sequence[Run]) -> list[list[Run]]:
    """Groups runs with equal configs (seed removed), in order of first appearance."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        key = json.dumps(run.config, sort_keys=True, default=str)
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flattens nested mappings to dotted keys: ``{"algo": {"lr": 1}}`` -> ``{"algo.lr": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def default_labels(groups: Sequence[Sequence[Run]]) -> list[str]:
    """Names each group by the config keys that differ between groups, else its first folder."""
    flats = [flatten(group[0].config) for group in groups]
    keys = sorted({key for flat in flats for key in flat})
    missing = object()
    differing = [key for key in keys if len({repr(f.get(key, missing)) for f in flats}) > 1]
    labels = []
    for group, flat in zip(groups, flats, strict=True):
        parts = [f"{key}={_label_value(flat.get(key))}" for key in differing if key in flat]
        if len(parts) > MAX_LABEL_KEYS:
            parts = [*parts[:MAX_LABEL_KEYS], "..."]
        labels.append(", ".join(parts) or group[0].path.name)
    return labels


def _label_value(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return str(value)


def group_curve(runs: Sequence[Run], max_points: int = MAX_GRID_POINTS) -> GroupCurve:
    """Mean and min-max band of the runs, each interpolated onto a common step grid.

    The grid spans the steps every run covers: the union of the runs' steps in that range, or
    ``max_points`` evenly spaced steps when the union is larger.

    Raises:
        PlotError: The runs cover no common step range.
    """
    lo = max(float(run.steps[0]) for run in runs)
    hi = min(float(run.steps[-1]) for run in runs)
    if lo > hi:
        names = ", ".join(str(run.path) for run in runs)
        raise PlotError(f"{names}: the runs share no step range (seeds of one config)")
    union = np.unique(np.concatenate([run.steps for run in runs]).astype(np.float64))
    grid = union[(union >= lo) & (union <= hi)]
    if len(grid) > max_points:
        grid = np.linspace(lo, hi, max_points)
    curves = np.stack([np.interp(grid, run.steps, run.values) for run in runs])
    return GroupCurve(
        steps=grid, mean=curves.mean(axis=0), low=curves.min(axis=0), high=curves.max(axis=0)
    )


def plot_groups(
    groups: Sequence[Sequence[Run]], labels: Sequence[str], metric: str, out: Path
) -> None:
    """Saves one PNG with each group's mean curve, min-max band and ``label (n seeds)``."""
    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for index, (group, label) in enumerate(zip(groups, labels, strict=True)):
        curve = group_curve(group)
        color = f"C{index % 10}"
        seeds = f"{len(group)} seed{'s' if len(group) > 1 else ''}"
        ax.plot(curve.steps, curve.mean, color=color, linewidth=1.8, label=f"{label} ({seeds})")
        if len(group) > 1:
            ax.fill_between(curve.steps, curve.low, curve.high, color=color, alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel(metric)
    ax.set_title(metric)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the command line (``sys.argv[1:]`` when ``argv`` is None)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with tb/)")
    parser.add_argument(
        "--label", action="append", default=None, help="label of a group, once per group, in order"
    )
    parser.add_argument("--metric", default=DEFAULT_METRIC, help="scalar tag to plot")
    parser.add_argument("--out", type=Path, default=Path("curves.png"), help="PNG to write")
    return parser.parse_args(argv)


def plot_runs(
    run_dirs: Sequence[Path], metric: str, out: Path, labels: Sequence[str] | None = None
) -> Path:
    """Loads, groups and plots runs; returns the PNG written.

    Raises:
        PlotError: See `load_run` and `group_curve`; also a ``labels`` count unlike the groups'.
    """
    groups = group_runs([load_run(run_dir, metric) for run_dir in run_dirs])
    if labels is None:
        labels = default_labels(groups)
    elif len(labels) != len(groups):
        firsts = ", ".join(str(group[0].path) for group in groups)
        raise PlotError(f"--label given {len(labels)} times for {len(groups)} groups: {firsts}")
    plot_groups(groups, labels, metric, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (2 on bad input, printed as one line)."""
    args = parse_args(argv)
    try:
        out = plot_runs(args.runs, args.metric, args.out, args.label)
    except PlotError as err:
        print(f"error: {err}", file=sys.stderr)
        return ERROR_EXIT
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
