"""What a process hosting one actor imports: the fewer heavy modules, the faster a run starts."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["soulsai_ray.actors.replay", "soulsai_ray.actors.weights"])
def test_the_replay_actor_and_the_weight_store_start_without_torch(module):
    """Ray imports the ``soulsai_ray.actors`` package and the shell's module in the actor's
    process; torch (about 2 s of CPU on a small machine) stays out of these two."""
    code = (
        f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
