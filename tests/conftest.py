"""Shared fixtures. Ray runs only on 127.0.0.1; consecutive modules that use ``ray_local`` share one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep every Ray address on loopback (see README, "Security"), and use token authentication for
# every cluster the tests start (Ray reads these once, before it is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
# One torch thread per test process: the suite runs several workers on few cores, and idle OpenMP
# threads spin (about 12% of the unit tests' CPU time on 2 cores). Ray actors set their own from
# cluster.torch_threads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# torch.compile in the test's own process: a pool of compile workers would start a Python with
# torch in each (about 5 CPU-s of a cold compile here); the generated code is the same.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")


LEAK_WAIT_S = 15.0

LONGEST_FIRST = (
    "e2e/test_benchmark_commands.py",  # about 120 s under `make test` on 2 cores
    "hosts/test_lan_cluster.py",
    "e2e/test_resume.py",
    "integration/test_watchdog.py",
    "e2e/test_train_script.py",
    "e2e/test_evaluate_script.py",
    "integration/test_eval_faults.py",
    "integration/test_faults.py",
    "integration/test_dqn_efficient_run.py",
    "integration/test_dqn_actors.py",
    "integration/test_multinode.py",
    "e2e/test_live_run.py",
    "e2e/test_learning.py",
    "integration/test_ppo_elastic.py",
    "e2e/test_group_signals.py",
    "integration/test_head_script.py",
    "integration/test_image_runs.py",
    "integration/test_souls_fight_on_ray.py",
    "unit/test_souls_fight_runs.py",  # about 15 s; the modules not named take under 10 s each
)
"""Test modules, longest first. ``make test`` runs each module whole on one worker, in the order
of the collection: the suite ends when the worker that took the last long module finishes it,
so the long ones start first and the short ones fill in behind them."""


def pytest_collection_modifyitems(config, items):
    """Puts the modules of `LONGEST_FIRST` first, in its order; every module stays whole and the
    others keep their order. A name there that is no module (renamed, removed) is an error."""
    missing = [name for name in LONGEST_FIRST if not (Path(__file__).parent / name).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py: LONGEST_FIRST names no module: {missing}")
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def key(item) -> int:
        module = item.nodeid.split("::")[0].removeprefix("tests/")
        return rank.get(module, len(rank))

    items.sort(key=key)


@pytest.fixture(scope="module", autouse=True)
def _no_shared_ray_where_unused(request):
    """Stops the shared local Ray (see ``ray_local``) before a module that does not use it: such
    a module starts its own cluster, or must see a process without Ray."""
    if "ray_local" not in request.fixturenames:
        from soulsai_ray.cluster import shutdown_ray

        shutdown_ray()


@pytest.fixture(scope="session")
def _shared_ray():
    """Stops the shared local Ray at the end of the session."""
    yield
    from soulsai_ray.cluster import shutdown_ray

    shutdown_ray()


@pytest.fixture(scope="module")
def ray_local(_shared_ray):
    """An embedded local Ray (4 logical CPUs, loopback only, no dashboard), shared by the
    modules that use it one after another: a start and stop cost about 7 s here.

    A module must leave no live actor behind. One that does fails its last test's teardown,
    naming the actors' classes, and Ray is stopped: the next module starts a fresh one.
    """
    import ray

    from soulsai_ray.cluster import init_ray, shutdown_ray
    from soulsai_ray.config import ClusterConfig

    if not ray.is_initialized():
        init_ray(ClusterConfig(num_cpus=4, include_dashboard=False))
    yield
    leaked = _live_actors(wait_s=LEAK_WAIT_S)
    if leaked:
        shutdown_ray()
        pytest.fail(f"the module left live actors behind: {sorted(leaked.values())}")


def _live_actors(wait_s: float) -> dict[str, str]:
    """{actor id: class name} of the actors not yet dead, after waiting up to ``wait_s`` for
    killed ones to be recorded as dead."""
    import time

    from ray._private import state

    deadline = time.monotonic() + wait_s
    while True:
        live = {
            actor_id: info.get("ActorClassName", "?")
            for actor_id, info in state.actors().items()
            if info.get("State") != "DEAD"
        }
        if not live or time.monotonic() >= deadline:
            return live
        time.sleep(0.2)


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
