"""Tests for soulsai_ray.telemetry: TensorBoard output, episode statistics, console, summary, plot."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from soulsai_ray import telemetry as telemetry_module
from soulsai_ray.telemetry import Telemetry, format_number, rolling_mean, to_json_safe

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
    with pytest.raises(ValueError, match="2 returns but 1 lengths"):
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
        "steps 1,000/10,000 (10.0%) | 100.0 steps/s | return_mean 123.4, loss 0.0123, eps 0.05"
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
    stream = _TtyStream()
    monkeypatch.setattr("sys.stdout", stream)
    t = Telemetry(tmp_path, console=True, total_env_steps=2_000)
    t.update_console(0, {"return_mean": None})
    t.update_console(1_000, {"return_mean": 123.4, "eps": 0.05})
    t.close()

    output = stream.getvalue()
    assert "\r" in output  # redrawn in place, not one line per update
    final = output.split("\r")[-1]
    assert "50%" in final
    assert "1.00k/2.00k" in final
    assert "return_mean 123.4, eps 0.05" in final
