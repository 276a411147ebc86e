"""Tests for scripts/plot.py: grouping runs by config, seed mean and band, errors, the PNG."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml
from matplotlib.image import imread
from torch.utils.tensorboard import SummaryWriter

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "plot.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plot_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


plot = _load_script()


def _write_run(
    run_dir: Path, seed: int, lr: float, points: dict[str, list[tuple[int, float]]]
) -> Path:
    config = {"seed": seed, "algo": {"name": "dqn", "lr": lr}, "env": {"name": "cartpole"}}
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    writer = SummaryWriter(log_dir=str(run_dir / "tb"))
    for tag, tag_points in points.items():
        for step, value in tag_points:
            writer.add_scalar(tag, value, step)
    writer.close()
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three seeds of lr=0.001 (returns offset by the seed) and one run of lr=0.0003."""
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for seed in range(3):
        returns = [(step, step / 10.0 + seed) for step in range(0, 1001, 100)]
        wins = [(step, min(1.0, step / 1000.0)) for step in range(0, 1001, 250)]
        points = {"episode/return_mean": returns, "episode/win_rate": wins}
        dirs.append(_write_run(root / f"lr1e-3_seed{seed}", seed, 0.001, points))
    slow = [(step, step / 20.0) for step in range(0, 801, 100)]
    dirs.append(_write_run(root / "lr3e-4", 0, 0.0003, {"episode/return_mean": slow}))
    return dirs


def _run_script(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_script_writes_a_png_of_all_runs(runs: list[Path], tmp_path: Path) -> None:
    proc = _run_script(*runs, cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "curves.png"  # the default, in the current folder
    assert proc.stdout.strip() == "curves.png"
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert out.stat().st_size > 10_000  # axes, two curves, a band and a legend
    assert imread(out).shape == (450, 800, 4)


def test_script_plots_another_metric_with_labels(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "sub" / "wins.png"
    proc = _run_script(
        *runs[:3], "--metric", "episode/win_rate", "--label", "dqn", "--out", out, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_seeds_of_one_config_form_one_group(runs: list[Path]) -> None:
    groups = plot.group_runs([plot.load_run(run, "episode/return_mean") for run in runs])

    assert [[run.path for run in group] for group in groups] == [runs[:3], runs[3:]]
    assert plot.default_labels(groups) == ["algo.lr=0.001", "algo.lr=0.0003"]
    curve = plot.group_curve(groups[0])
    np.testing.assert_allclose(curve.steps, np.arange(0, 1001, 100))
    np.testing.assert_allclose(curve.mean, np.arange(0, 1001, 100) / 10.0 + 1.0)  # seeds 0, 1, 2
    np.testing.assert_allclose(curve.high - curve.low, 2.0)


def test_group_curve_interpolates_onto_the_common_step_range() -> None:
    def run(steps: list[int], values: list[float]) -> object:
        return plot.Run(Path("r"), {}, np.array(steps), np.array(values, dtype=float))

    runs = [
        run([0, 10, 20], [0.0, 10.0, 20.0]),
        run([5, 15, 25], [1.0, 3.0, 5.0]),
        run([0, 40], [2.0, 2.0]),
    ]
    curve = plot.group_curve(runs)

    # Common range [5, 20]; the grid is every run's steps inside it.
    np.testing.assert_allclose(curve.steps, [5, 10, 15, 20])
    # Interpolated: run 0 -> 5, 10, 15, 20; run 1 -> 1, 2, 3, 4; run 2 -> 2, 2, 2, 2.
    np.testing.assert_allclose(curve.mean, [8 / 3, 14 / 3, 20 / 3, 26 / 3])
    np.testing.assert_allclose(curve.low, [1, 2, 2, 2])
    np.testing.assert_allclose(curve.high, [5, 10, 15, 20])

    thinned = plot.group_curve(runs, max_points=3)
    np.testing.assert_allclose(thinned.steps, [5, 12.5, 20])
    np.testing.assert_allclose(thinned.high, [5, 12.5, 20])


def test_group_curve_rejects_runs_without_a_common_range() -> None:
    runs = [
        plot.Run(Path("early"), {}, np.array([0, 10]), np.array([0.0, 1.0])),
        plot.Run(Path("late"), {}, np.array([20, 30]), np.array([0.0, 1.0])),
    ]
    with pytest.raises(plot.PlotError, match="early, late"):
        plot.group_curve(runs)


def test_labels_name_differing_keys_or_fall_back_to_the_folder() -> None:
    def group(path: str, config: dict) -> list:
        return [plot.Run(Path(path), config, np.array([0]), np.array([0.0]))]

    same = {"algo": {"lr": 0.1}}
    assert plot.default_labels([group("runs/a", same)]) == ["a"]
    labels = plot.default_labels(
        [
            group("a", {"algo": {"lr": 0.1, "gamma": 0.99}, "device": None}),
            group("b", {"algo": {"lr": 0.2, "gamma": 0.99}, "device": "cuda"}),
        ]
    )
    assert labels == ["algo.lr=0.1, device=null", "algo.lr=0.2, device=cuda"]


def test_read_scalars_averages_points_logged_at_one_step(tmp_path: Path) -> None:
    points = {"episode/return_mean": [(0, 1.0), (10, 2.0), (10, 4.0)]}
    run_dir = _write_run(tmp_path / "run", 0, 0.1, points)
    steps, values = plot.read_scalars(run_dir, "episode/return_mean")
    np.testing.assert_array_equal(steps, [0, 10])
    np.testing.assert_allclose(values, [1.0, 3.0])


def test_missing_metric_exits_2_naming_the_run_and_its_tags(
    runs: list[Path], tmp_path: Path
) -> None:
    proc = _run_script(runs[0], runs[3], "--metric", "episode/win_rate", cwd=tmp_path)

    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(runs[3]) in lines[0]
    assert "'episode/win_rate'" in lines[0]
    assert "it has: episode/return_mean" in lines[0]
    assert not (tmp_path / "curves.png").exists()


def test_missing_folder_or_events_exit_2_naming_the_path(runs: list[Path], tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    proc = _run_script(runs[0], missing, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {missing}: no such run folder"

    empty = tmp_path / "empty"
    (empty / "tb").mkdir(parents=True)
    (empty / "config.yaml").write_text("seed: 0\n")
    assert plot.main([str(empty)]) == 2
    with pytest.raises(plot.PlotError, match=f"{empty / 'tb'}: no TensorBoard event files"):
        plot.load_run(empty, "episode/return_mean")


def test_label_count_must_match_the_groups(runs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(plot.PlotError, match="--label given 1 times for 2 groups"):
        plot.plot_runs(runs, "episode/return_mean", tmp_path / "x.png", labels=["only one"])
    assert not (tmp_path / "x.png").exists()
