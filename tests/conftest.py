"""Shared fixtures. Ray is started once per test session and only on 127.0.0.1."""

from __future__ import annotations

import os

import pytest

# Keep every Ray address on loopback (see README, "Security").
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")


@pytest.fixture(scope="session")
def ray_local():
    """An embedded local Ray for integration tests (4 logical CPUs, loopback only)."""
    from soulsai_ray.cluster import init_ray, shutdown_ray
    from soulsai_ray.config import ClusterConfig

    init_ray(ClusterConfig(num_cpus=4))
    yield
    shutdown_ray()
