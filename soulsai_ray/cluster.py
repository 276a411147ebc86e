"""Starting or joining Ray, and placement helpers."""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from soulsai_ray.config import ClusterConfig

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def init_ray(cfg: ClusterConfig, extra_cpus_needed: float = 0.0) -> dict[str, Any]:
    """Starts an embedded local Ray (``cfg.address`` None) or joins a running cluster.

    A local Ray binds to 127.0.0.1 only: a one-machine run needs no outside connections.

    Args:
        cfg: Cluster settings.
        extra_cpus_needed: Logical CPUs the run's actors reserve; a local Ray gets at least
            this many so that every actor can be placed on a small machine.

    Returns:
        Ray's context info (addresses of the node that was started or joined).
    """
    runtime_env = {"env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}}
    if cfg.address is None:
        num_cpus = cfg.num_cpus or max(os.cpu_count() or 1, int(-(-extra_cpus_needed // 1)))
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        context = ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=cfg.include_dashboard,
            dashboard_host=LOOPBACK,
            _node_ip_address=LOOPBACK,
            runtime_env=runtime_env,
            log_to_driver=True,
            configure_logging=False,
        )
    else:
        context = ray.init(address=cfg.address, runtime_env=runtime_env, log_to_driver=True)
    return dict(context.address_info)


def on_this_node() -> NodeAffinitySchedulingStrategy:
    """A scheduling strategy that pins an actor to the driver's node (learner, replay, weights)."""
    return NodeAffinitySchedulingStrategy(
        node_id=ray.get_runtime_context().get_node_id(), soft=False
    )


def actor_name_prefix() -> str:
    """A prefix that makes this run's actor names unique in a shared cluster."""
    return f"soulsai-{uuid.uuid4().hex[:8]}"


def shutdown_ray() -> None:
    """Disconnects from (and, for a local Ray, stops) Ray; safe to call twice."""
    if ray.is_initialized():
        ray.shutdown()
