"""python -m soulsai_bench soak's folder: temporary unless ``--runs-dir`` names one, never an
earlier run's (its run itself is tests/e2e/test_benchmark_commands.py's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from soulsai_bench.soak import Soak


def _soak(work: Path | None) -> Soak:
    return Soak("dqn", 0.25, 0, 1, 0.01, ["rollout"], (), work)


def test_a_soak_keeps_its_run_in_the_folder_it_is_given(tmp_path):
    soak = _soak(tmp_path / "kept")
    assert soak.temporary is None
    assert soak.work == tmp_path / "kept" and soak.work.is_dir()
    assert soak.run_dir == tmp_path / "kept" / "run"
    assert _soak(tmp_path / "kept").work.is_dir()  # still empty: it may be given again


def test_a_folder_holding_anything_is_refused(tmp_path):
    (tmp_path / "earlier" / "run").mkdir(parents=True)
    with pytest.raises(ValueError, match="is not an empty folder"):
        _soak(tmp_path / "earlier")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="is not an empty folder"):
        _soak(tmp_path / "a_file")


def test_without_a_folder_the_run_is_temporary(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    soak = _soak(None)
    assert soak.work.parent == tmp_path and soak.work.name.startswith("soak_dqn_")
    soak.temporary.cleanup()
    assert list(tmp_path.iterdir()) == []
