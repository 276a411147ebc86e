"""Shared fixtures. Ray is started once per test module and only on 127.0.0.1."""

from __future__ import annotations

import os

import pytest

# Keep every Ray address on loopback (see README, "Security"), and use token authentication for
# every cluster the tests start (Ray reads these once, before it is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def ray_local():
    """An embedded local Ray for one test module (4 logical CPUs, loopback only).

    Module scope lets modules that need a multi-node ``ray.cluster_utils.Cluster`` connect
    their own driver in between.
    """
    from soulsai_ray.cluster import init_ray, shutdown_ray
    from soulsai_ray.config import ClusterConfig

    init_ray(ClusterConfig(num_cpus=4, include_dashboard=False))  # tests need no dashboard
    yield
    shutdown_ray()


class _RunsCode:
    """A pickled object whose unpickling would create ``marker`` (by running a shell command)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def forge_checkpoint():
    """Returns ``forge(folder, marker, format_version=2, meta=None)``.

    It writes a checkpoint folder whose manifest is valid (sizes and hashes match) but whose
    state file runs a shell command creating ``marker`` when unpickled: what an attacker who
    hands a user a checkpoint controls.
    """
    import hashlib
    import json
    from pathlib import Path

    import torch

    def forge(folder: Path, marker: Path, format_version: int = 2, meta: dict | None = None):
        folder = Path(folder)
        folder.mkdir(parents=True)
        torch.save({"learner": _RunsCode(str(marker)), "version": 1}, folder / "state.pt")
        meta = {"updates": 10**9, "env_steps": 10**9, "resumes": 0, **(meta or {})}
        (folder / "meta.json").write_text(json.dumps(meta))
        (folder / "config.yaml").write_text("algo:\n  name: dqn\n")
        files = {
            name: {
                "size": (folder / name).stat().st_size,
                "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest(),
            }
            for name in ("state.pt", "meta.json", "config.yaml")
        }
        manifest = {"version": format_version, "files": files}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        return folder

    return forge
