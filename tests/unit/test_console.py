"""Tests for soulsai_ray.console: plain lines, ETA, smoothed rate and the rich live display."""

from __future__ import annotations

import io
import math
import re
import sys

import pytest
from rich.console import Console

from soulsai_ray.console import (
    RATE_TIME_CONSTANT_S,
    ConsoleProgress,
    eta_seconds,
    format_duration,
)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def _final_frame(output: str) -> str:
    """The last redraw of a live display, without colour and cursor codes."""
    return _ANSI.sub("", output).split("\r")[-1]


def test_plain_lines_come_at_once_then_at_most_every_10s() -> None:
    clock, stream = _FakeClock(), io.StringIO()
    progress = ConsoleProgress(stream, total_env_steps=10_000, start_steps=0, clock=clock)
    assert stream.getvalue() == ""  # nothing before the first update

    progress.update(0, {"ret": None})
    clock.now += 9.9
    progress.update(990, {"ret": 1.5})  # within 10 s of the first line: silent
    clock.now += 0.1
    progress.update(1_000, {"ret": 2.5, "win": 0.25})
    clock.now += 5.0
    progress.update(1_500, {"ret": 3.5})  # silent again
    progress.close()

    lines = stream.getvalue().splitlines()
    assert lines == [
        "steps 0/10,000 (0.0%) | ret -",
        "steps 1,000/10,000 (10.0%) | 100.0 steps/s | eta 1m30s | ret 2.5, win 0.25",
    ]


def test_plain_line_without_target_shows_the_time_limit_eta() -> None:
    clock, stream = _FakeClock(), io.StringIO()
    progress = ConsoleProgress(
        stream, None, 50, time_limit_s=3600.0, clock=clock, start_time=clock.now - 600.0
    )
    progress.update(50, {})
    assert stream.getvalue() == "steps 50 | eta 50m00s\n"  # no rate yet, no fields


@pytest.mark.parametrize(
    ("env_steps", "total", "rate", "time_left", "expected"),
    [
        (1_000, 2_000, 100.0, None, 10.0),  # steps target only
        (1_000, None, None, 42.0, 42.0),  # time limit only: known without a rate
        (1_000, 2_000, 100.0, 4.0, 4.0),  # the time limit comes first
        (1_000, 2_000, 100.0, 60.0, 10.0),  # the step target comes first
        (1_000, 2_000, None, None, None),  # rate unknown: no ETA
        (1_000, 2_000, 0.0, None, None),  # stalled: no ETA
        (2_500, 2_000, None, None, 0.0),  # target passed
        (1_000, 2_000, 100.0, -3.0, 0.0),  # time limit passed
        (1_000, None, 100.0, None, None),  # no stop condition known
    ],
)
def test_eta_seconds_takes_the_earlier_stop_condition(
    env_steps: int,
    total: int | None,
    rate: float | None,
    time_left: float | None,
    expected: float | None,
) -> None:
    assert eta_seconds(env_steps, total, rate, time_left) == expected


def test_eta_counts_from_start_time_and_down_between_updates() -> None:
    clock = _FakeClock()
    progress = ConsoleProgress(
        io.StringIO(), 2_000, 0, time_limit_s=100.0, clock=clock, start_time=clock.now - 30.0
    )
    assert progress.eta_s() == pytest.approx(70.0)  # 100 s limit, 30 s already gone
    clock.now += 10.0
    progress.update(1_000, {})
    assert progress.eta_s() == pytest.approx(10.0)  # 1,000 steps left at 100 steps/s
    clock.now += 4.0
    assert progress.eta_s() == pytest.approx(6.0)


def test_rate_is_smoothed_by_the_time_between_updates() -> None:
    clock = _FakeClock()
    progress = ConsoleProgress(io.StringIO(), None, 0, clock=clock)
    assert progress.rate is None
    clock.now += 10.0
    progress.update(1_000, {})
    assert progress.rate == pytest.approx(100.0)  # the first measurement is taken as is
    clock.now += 10.0
    progress.update(4_000, {})  # 300 steps/s over the last 10 s
    weight = 1.0 - math.exp(-10.0 / RATE_TIME_CONSTANT_S)
    assert progress.rate == pytest.approx(100.0 + weight * 200.0)
    progress.update(4_500, {})  # no time passed: the rate stays
    assert progress.rate == pytest.approx(100.0 + weight * 200.0)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.4, "0s"),
        (45, "45s"),
        (125, "2m05s"),
        (3723, "1h02m03s"),
        (2 * 86_400 + 3 * 3600, "2d03h"),
    ],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


def test_live_display_shows_steps_bar_rate_eta_and_fields() -> None:
    clock, out = _FakeClock(), io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    progress = ConsoleProgress(out, 2_000, 0, time_limit_s=600.0, clock=clock, console=console)
    clock.now += 10.0
    progress.update(1_000, {"ret": 123.4, "win": 0.5, "alive": 3, "loss": 0.0123})
    progress.update(1_000, {"ret": 123.4, "win": None, "alive": 3, "loss": 0.0123})
    progress.close()

    raw = out.getvalue()
    assert "\x1b[1A" in raw  # redrawn in place: the cursor moves up
    final = _final_frame(raw)
    assert "steps 1,000/2,000 (50.0%)" in final
    assert "━" in final  # the progress bar
    assert "100.0 steps/s" in final
    assert "eta 10s" in final
    assert "ret 123.4  win -  alive 3  loss 0.0123" in final


def test_live_display_is_used_on_a_tty_stream() -> None:
    stream = _TtyStream()
    progress = ConsoleProgress(stream, None, 0, clock=_FakeClock())
    progress.update(5, {"win": 0.75})
    progress.close()
    final = _final_frame(stream.getvalue())
    assert "steps 5" in final
    assert "eta -" in final
    assert "win 0.75" in final
    assert " | " not in stream.getvalue()  # no plain line


def test_close_twice_stops_the_display_once(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    stdout = sys.stdout
    progress = ConsoleProgress(
        out, 10, 0, clock=_FakeClock(), console=Console(file=out, force_terminal=True)
    )
    assert sys.stdout is not stdout  # rich sends prints above the live display meanwhile
    progress.close()
    written = out.getvalue()
    progress.close()
    assert sys.stdout is stdout
    assert out.getvalue() == written
    assert written.endswith("\x1b[?25h")  # the cursor is shown again


def test_log_lines_go_above_the_live_display_and_back_after_it(monkeypatch) -> None:
    """Handlers that held the terminal before the display started print through it while it runs
    (their lines would otherwise cut through the display), and hold the terminal again after."""
    import io
    import logging
    import sys

    from rich.console import Console

    from soulsai_ray.console import ConsoleProgress

    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "__stdout__", terminal)
    handler = logging.StreamHandler(terminal)
    files = logging.FileHandler("/dev/null")
    root = logging.getLogger()
    root.addHandler(handler)
    root.addHandler(files)
    try:
        console = Console(file=terminal, force_terminal=True, width=100)
        progress = ConsoleProgress(terminal, 1000, 0, console=console)
        assert handler.stream is not terminal and handler.stream is sys.stdout
        assert files.stream.name == "/dev/null"
        progress.update(10, {"ret": 1.0})
        progress.close()
        assert handler.stream is terminal
        progress.close()
    finally:
        root.removeHandler(handler)
        root.removeHandler(files)
        files.close()
