"""Tests for soulsai_ray.telemetry: TensorBoard output, episode statistics, console, summary, plot."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from soulsai_ray import telemetry as telemetry_module
from soulsai_ray.checkpoint import CheckpointManager
from soulsai_ray.checkpoint_folder import load_checkpoint
from soulsai_ray.console import format_number
from soulsai_ray.curve import DEFAULT_CURVE_POINTS, LearningCurve, rolling_mean
from soulsai_ray.telemetry import Telemetry, to_json_safe

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture
def telemetry(tmp_path: Path):
    t = Telemetry(tmp_path, window=3, console=False)
    yield t
    t.close()


def test_tensorboard_events_hold_logged_scalars(tmp_path: Path) -> None:
    t = Telemetry(tmp_path, window=2, console=False, tb_subdir="events")
    t.log_episodes(100, [1.0, 3.0], [10, 20])
    t.log_episodes(150, [], [])
    t.log_episodes(200, [5.0], [30])
    t.log_scalars(200, {"train/loss": 0.5, "train/skip": None, "train/nan": math.nan, "eps": 1})
    t.close()

    assert list((tmp_path / "events").glob("events.out.tfevents.*"))
    scalars = _read_scalars(tmp_path / "events")
    assert scalars["episode/return"] == [(100, 1.0), (100, 3.0), (200, 5.0)]
    assert scalars["episode/length"] == [(100, 10.0), (100, 20.0), (200, 30.0)]
    # window=2: mean(1, 3) = 2 after the first call, mean(3, 5) = 4 after the third;
    # the empty call writes nothing.
    assert scalars["episode/return_mean"] == [(100, 2.0), (200, 4.0)]
    assert scalars["train/loss"] == [(200, 0.5)]
    assert scalars["eps"] == [(200, 1.0)]
    assert "train/skip" not in scalars
    assert "train/nan" not in scalars


def test_return_mean_rolls_over_window(telemetry: Telemetry) -> None:
    assert telemetry.return_mean is None
    assert telemetry.episodes == 0
    telemetry.log_episodes(10, [1.0], [5])
    assert telemetry.return_mean == pytest.approx(1.0)
    telemetry.log_episodes(20, [2.0, 6.0], [5, 5])
    assert telemetry.return_mean == pytest.approx(3.0)  # (1 + 2 + 6) / 3
    telemetry.log_episodes(30, [10.0], [5])
    assert telemetry.return_mean == pytest.approx(6.0)  # (2 + 6 + 10) / 3, the 1 fell out
    telemetry.log_episodes(40, [-3.0, 0.0], [5, 5])
    assert telemetry.return_mean == pytest.approx(7.0 / 3.0)  # (10 - 3 + 0) / 3
    assert telemetry.episodes == 6
    assert telemetry.learning_curve() == [
        (10, 1.0),
        (20, 2.0),
        (20, 6.0),
        (30, 10.0),
        (40, -3.0),
        (40, 0.0),
    ]


def test_log_episodes_rejects_mismatched_lengths(telemetry: Telemetry) -> None:
    with pytest.raises(ValueError, match="2 returns, 1 lengths"):
        telemetry.log_episodes(10, [1.0, 2.0], [5])


def test_rolling_mean_matches_hand_computed_values() -> None:
    got = rolling_mean([1.0, 2.0, 6.0, 10.0, -3.0], window=3)
    np.testing.assert_allclose(got, [1.0, 1.5, 3.0, 6.0, 13.0 / 3.0])


def test_close_is_idempotent_and_blocks_further_logging(tmp_path: Path) -> None:
    t = Telemetry(tmp_path, console=False)
    t.close()
    t.close()
    with pytest.raises(RuntimeError, match="closed"):
        t.log_scalars(1, {"a": 1.0})
    with pytest.raises(RuntimeError, match="closed"):
        t.log_episodes(1, [1.0], [1])


def test_summary_round_trip_turns_nan_into_null(telemetry: Telemetry, tmp_path: Path) -> None:
    path = tmp_path / "out" / "summary.json"
    path.parent.mkdir()
    path.write_text("old content")
    summary = {
        "return_mean": 201.5,
        "first_time_to_target_s": math.nan,
        "env_steps": np.int64(50_000),
        "losses": [0.5, float("nan"), np.float32(0.25)],
        "nested": {"q": math.inf, "ok": True, "name": "dqn"},
        "arr": np.array([1, 2]),
    }
    telemetry.write_summary(path, summary)

    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "return_mean": 201.5,
        "first_time_to_target_s": None,
        "env_steps": 50_000,
        "losses": [0.5, None, 0.25],
        "nested": {"q": None, "ok": True, "name": "dqn"},
        "arr": [1, 2],
    }
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]


def test_to_json_safe_converts_unknown_objects_to_strings() -> None:
    assert to_json_safe({1: Path("a/b"), "t": (1, 2)}) == {"1": "a/b", "t": [1, 2]}


def _assert_valid_png(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000
    image = imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100
    return image


def test_plot_learning_curve_writes_png(telemetry: Telemetry, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(50):
        telemetry.log_episodes(100 * (i + 1), [float(i) + rng.normal()], [100])
    path = tmp_path / "plots" / "curve.png"
    telemetry.plot_learning_curve(path, title="DQN CartPole", target=40.0)
    with_data = _assert_valid_png(path)

    empty = Telemetry(tmp_path / "empty", console=False)
    empty_path = tmp_path / "empty.png"
    empty.plot_learning_curve(empty_path, title="nothing yet")
    empty.close()
    without_data = _assert_valid_png(empty_path)
    assert not np.array_equal(with_data, without_data)
    assert not list(tmp_path.glob("**/.*.tmp"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (123.4, "123.4"),
        (123.456, "123.5"),
        (0.0123, "0.0123"),
        (0.05, "0.05"),
        (12345.6, "12346"),
        (0.0000123, "1.23e-05"),
        (0.0, "0"),
        (7, "7"),
        (np.float32(0.5), "0.5"),
        (None, "-"),
        (math.nan, "nan"),
        (True, "True"),
    ],
)
def test_format_number_is_compact(value: object, expected: str) -> None:
    assert format_number(value) == expected


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_console_without_tty_prints_at_most_every_10s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = _FakeClock()
    monkeypatch.setattr(telemetry_module, "_clock", clock)
    t = Telemetry(tmp_path, console=True, total_env_steps=10_000)
    fields = {"return_mean": 123.4, "loss": 0.0123, "eps": 0.05}

    t.update_console(0, fields)
    clock.now += 5.0
    t.update_console(500, fields)  # within 10 s of the last line: silent
    clock.now += 5.0
    t.update_console(1_000, fields)
    t.close()

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0] == "steps 0/10,000 (0.0%) | return_mean 123.4, loss 0.0123, eps 0.05"
    assert lines[1] == (
        "steps 1,000/10,000 (10.0%) | 100.0 steps/s | eta 1m30s"
        " | return_mean 123.4, loss 0.0123, eps 0.05"
    )


def test_console_disabled_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = Telemetry(tmp_path, console=False)
    t.update_console(100, {"loss": 1.0})
    t.close()
    assert capsys.readouterr().out == ""


class _TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_on_tty_uses_progress_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _FakeClock()
    monkeypatch.setattr(telemetry_module, "_clock", clock)
    stream = _TtyStream()
    monkeypatch.setattr("sys.stdout", stream)
    t = Telemetry(tmp_path, console=True, total_env_steps=2_000, time_limit_s=15.0)
    clock.now += 2.0  # the time limit counts from the creation of Telemetry
    t.update_console(0, {"return_mean": None})
    clock.now += 10.0
    t.update_console(1_000, {"return_mean": 123.4, "eps": 0.05})
    t.close()

    output = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue())
    assert "\r" in output  # redrawn in place, not one line per update
    final = output.split("\r")[-1]
    assert "steps 1,000/2,000 (50.0%)" in final
    assert "100.0 steps/s" in final
    assert "eta 3s" in final  # 15 s limit - 12 s elapsed, before the 10 s left to 2,000 steps
    assert "return_mean 123.4" in final
    assert "eps 0.05" in final


def test_rolling_mean_weights_points_by_their_episode_counts() -> None:
    # Points stand for 2, 2 and 1 episodes; each mean covers >= 3 episodes where it can.
    got = rolling_mean([1.0, 3.0, 5.0], window=3, counts=[2, 2, 1])
    np.testing.assert_allclose(got, [1.0, (2 * 1.0 + 2 * 3.0) / 4, (2 * 3.0 + 5.0) / 3])
    np.testing.assert_allclose(
        rolling_mean([1.0, 2.0, 6.0], window=2, counts=[1, 1, 1]), rolling_mean([1, 2, 6], 2)
    )


def test_learning_curve_of_a_million_episodes_stays_bounded_and_faithful() -> None:
    cap, chunk = 4096, 1000
    curve = LearningCurve(max_points=cap)
    rng = np.random.default_rng(0)
    all_steps, all_returns = [], []
    for i in range(1_000_000 // chunk):
        steps = np.arange(i * chunk, (i + 1) * chunk) * 3
        returns = rng.normal(loc=i / 10.0, scale=5.0, size=chunk)
        curve.extend(steps, returns)
        assert len(curve) <= cap
        all_steps.append(steps)
        all_returns.append(returns)
    steps, returns = np.concatenate(all_steps), np.concatenate(all_returns)

    state = curve.state()
    counts = state["counts"]
    assert curve.episodes == counts.sum() == 1_000_000
    assert len(state["steps"]) == len(state["returns"]) == len(counts) <= cap
    assert len(curve) > cap // 2  # downsampled, not thrown away
    assert np.all(counts[:-1] == counts[0]) and counts[-1] <= counts[0]  # even buckets
    np.testing.assert_allclose(np.average(state["returns"], weights=counts), returns.mean())
    # Each point is the mean return of its episodes, at the step of the last of them.
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    np.testing.assert_allclose(state["returns"], np.add.reduceat(returns, first) / counts)
    np.testing.assert_array_equal(state["steps"], steps[np.cumsum(counts) - 1])


def test_learning_curve_merges_adjacent_points_when_full() -> None:
    curve = LearningCurve(max_points=4)
    curve.extend([1, 2, 3, 4], [1.0, 3.0, 5.0, 7.0])
    assert curve.points() == [(1, 1.0), (2, 3.0), (3, 5.0), (4, 7.0)]
    curve.extend([5], [10.0])
    assert curve.points() == [(2, 2.0), (4, 6.0), (5, 10.0)]
    curve.extend([6, 7, 8], [20.0, 0.0, 2.0])
    assert curve.points() == [(2, 2.0), (4, 6.0), (6, 15.0), (8, 1.0)]
    assert curve.state()["counts"].tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="even"):
        LearningCurve(max_points=3)


def test_curve_state_round_trip_continues_like_an_uninterrupted_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    chunks = [(100 * (i + 1), rng.normal(size=int(rng.integers(0, 5)))) for i in range(40)]
    whole = Telemetry(tmp_path / "whole", window=5, console=False, curve_points=8)
    first = Telemetry(tmp_path / "first", window=5, console=False, curve_points=8)
    for step, returns in chunks[:25]:
        whole.log_episodes(step, returns, [1] * len(returns))
        first.log_episodes(step, returns, [1] * len(returns))
    resumed = Telemetry(tmp_path / "resumed", window=5, console=False, curve_points=8)
    resumed.restore_curve(first.curve_state())
    for step, returns in chunks[25:]:
        whole.log_episodes(step, returns, [1] * len(returns))
        resumed.log_episodes(step, returns, [1] * len(returns))

    assert resumed.episodes == whole.episodes == sum(len(r) for _, r in chunks)
    got, want = resumed.curve_state(), whole.curve_state()
    assert len(want["steps"]) <= 8 and want["counts"].max() > 1
    for key in ("steps", "returns", "counts", "recent_returns"):
        np.testing.assert_allclose(got[key], want[key], err_msg=key)
    assert resumed.return_mean == pytest.approx(whole.return_mean)
    for t in (whole, first, resumed):
        t.close()


def test_restore_curve_reads_old_list_of_pairs(tmp_path: Path) -> None:
    t = Telemetry(tmp_path, window=3, console=False, curve_points=4)
    t.restore_curve([(10, 1.0), (20, 2.0), (20, 6.0)])
    assert t.learning_curve() == [(10, 1.0), (20, 2.0), (20, 6.0)]
    assert t.episodes == 3
    assert t.return_mean == pytest.approx(3.0)

    t.restore_curve([(i, float(i)) for i in range(1, 11)])  # more episodes than points
    assert t.episodes == 10
    assert t.learning_curve() == [(4, 2.5), (8, 6.5), (10, 9.5)]
    assert t.return_mean == pytest.approx(9.0)  # the last three episodes, exactly
    t.close()


def test_checkpointed_curve_of_a_long_run_is_small(tmp_path: Path) -> None:
    episodes = 1_000_000
    old_form = np.stack([np.arange(episodes) * 7.0, np.sin(np.arange(episodes))], axis=1)
    t = Telemetry(tmp_path / "run", window=100, console=False)
    t.restore_curve(old_form)
    t.log_episodes(7 * episodes, [1.0, 2.0], [5, 5])
    state = t.curve_state()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert max(len(v) for v in state.values()) <= DEFAULT_CURVE_POINTS

    manager = CheckpointManager(tmp_path / "ckpts")
    path = manager.save("ckpt", {"telemetry": {"curve": state}}, {}, "")
    assert (path / "state.pt").stat().st_size < 4 * DEFAULT_CURVE_POINTS * 8 + 10_000
    restored = Telemetry(tmp_path / "resumed", window=100, console=False)
    restored.restore_curve(load_checkpoint(path)[0]["telemetry"]["curve"])
    assert restored.learning_curve() == t.learning_curve()
    assert restored.episodes == t.episodes == episodes + 2
    assert restored.return_mean == pytest.approx(t.return_mean)
    t.close()
    restored.close()


def test_plot_of_downsampled_curve_draws_point_means_and_rolling_mean(tmp_path: Path) -> None:
    t = Telemetry(tmp_path, window=10, console=False, curve_points=16)
    for i in range(200):
        t.log_episodes(10 * (i + 1), [float(i)], [10])
    state = t.curve_state()
    ax = Figure().add_subplot()
    telemetry_module._draw_curve(ax, state, window=10)

    points, mean = ax.get_lines()
    assert points.get_label() == "mean return of 16 episodes"
    np.testing.assert_array_equal(points.get_ydata(), state["returns"])
    assert mean.get_label() == "mean of last 16"
    np.testing.assert_allclose(
        mean.get_ydata(), rolling_mean(state["returns"], 10, state["counts"])
    )
    t.plot_learning_curve(tmp_path / "curve.png", title="long run")
    _assert_valid_png(tmp_path / "curve.png")
    t.close()
