"""The peer baselines install on a fresh machine: pip resolves the ``bench`` extra next to the
library's own packages, and RLlib's own venv (``requirements-rllib.txt``), from wheels only (an
sdist such as box2d-py needs a compiler and swig). ``--dry-run``: nothing is installed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _resolve(tmp_path: Path, *args: str) -> list[dict]:
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-input"]
        + ["--report", str(report), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(report.read_text())["install"]


def _not_wheels(installs: list[dict]) -> list[str]:
    return [
        f"{i['metadata']['name']} {i['metadata']['version']}"
        for i in installs
        if not i.get("is_direct") and not i["download_info"]["url"].endswith(".whl")
    ]


@pytest.mark.timeout(900)
def test_bench_extra_resolves_next_to_the_library(tmp_path):
    installs = _resolve(tmp_path, "-e", ".[bench]")
    names = {i["metadata"]["name"].lower().replace("_", "-") for i in installs}
    assert "stable-baselines3" in names or _installed("stable-baselines3")
    assert _not_wheels(installs) == []
    # nothing the library already runs with is swapped for another version
    for pinned in ("gymnasium", "ray", "torch", "numpy"):
        assert pinned not in names, f"the bench extra would change {pinned}"


@pytest.mark.timeout(900)
def test_rllib_venv_resolves_from_wheels_on_a_fresh_machine(tmp_path):
    installs = _resolve(tmp_path, "--ignore-installed", "-r", "requirements-rllib.txt")
    versions = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs}
    assert _not_wheels(installs) == []
    assert versions["ray"] == metadata.version("ray")  # the same Ray as the library's venv
    assert "box2d" in versions and "box2d-py" not in versions


def test_rllib_is_not_in_the_bench_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert not any(re.match(r"ray\[.*rllib", dep) for dep in extras["bench"])


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True
