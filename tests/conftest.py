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

    init_ray(ClusterConfig(num_cpus=4))
    yield
    shutdown_ray()
