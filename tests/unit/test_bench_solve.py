"""python -m soulsai_bench solve's table: solved counts, median (range) over the solved seeds,
peer ratios."""

from __future__ import annotations

from soulsai_bench.solve import SolveRun, median_range, summary_table


def _run(who: str, seed: int, steps: int | None, seconds: float | None, **kw) -> SolveRun:
    return SolveRun(who, seed, steps is not None, steps, seconds, steps or 10**6, 1.0, 0.0, **kw)


def test_median_range_hand_computed():
    assert median_range([3.0, 1.0, 2.0], "{:.0f}") == "2 (1-3)"
    assert median_range([1.0, 2.0], "{:.1f}") == "1.5 (1.0-2.0)"
    assert median_range([], "{:.0f}") == "-"


def test_table_counts_unsolved_seeds_and_takes_medians_over_solved_ones():
    runs = [
        _run("soulsai_ray", 0, 40_000, 100.0),
        _run("sb3 rl-zoo", 0, 700_000, 1500.0),
        _run("soulsai_ray", 1, 60_000, 300.0),
        _run("sb3 rl-zoo", 1, None, None),
        _run("soulsai_ray", 2, None, None),
        _run("sb3 rl-zoo", 2, 900_000, 2500.0),
    ]
    table = summary_table(runs)
    assert "| soulsai_ray | 2/3 | 50,000 (40,000-60,000) | 200 (100-300) |" in table
    assert "| sb3 rl-zoo | 2/3 | 800,000 (700,000-900,000) | 2000 (1500-2500) |" in table
    assert "sb3 rl-zoo needs 16.0x the env steps and 10.0x the time" in table


def test_projected_game_time_is_marked():
    runs = [_run("soulsai_ray", 0, 1000, 50.0), _run("rllib", 0, 2000, 25.0, projected=True)]
    assert "| rllib | 1/1 | 2,000 (2,000-2,000) | 25 (25-25) (projected) |" in summary_table(runs)


def test_no_ratio_without_a_solved_run_of_ours():
    table = summary_table([_run("soulsai_ray", 0, None, None), _run("rllib", 0, 10, 1.0)])
    assert "| soulsai_ray | 0/1 | - | - |" in table and "needs" not in table
