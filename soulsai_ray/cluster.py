"""Starting or joining Ray, and placement helpers."""

from __future__ import annotations

import logging
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray._private.services as ray_services
import ray._private.utils as ray_utils
from ray._raylet import Config as RayConfig
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from soulsai_ray.config import ClusterConfig
from soulsai_ray.typed_config import ConfigError

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
QUIET_WARNINGS = ("PYTHONWARNINGS", "ignore::DeprecationWarning")
"""Ray's own deprecation warnings would fill the run's console from every actor process."""


def token_path() -> Path:
    """Where Ray reads the cluster token from: ``RAY_AUTH_TOKEN_PATH``, else
    ``~/.ray/auth_token`` (``RAY_AUTH_TOKEN`` itself, when set, comes first)."""
    path_from_env = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(path_from_env) if path_from_env else Path.home() / ".ray" / "auth_token"


def private_token_file() -> Path | None:
    """Makes the token file a run uses readable by its owner alone, creating it if missing.

    Whoever reads the token can run code as the trainer, yet Ray writes a new local cluster's
    token file with the process's umask (usually 0644, in a 0755 ``~/.ray``). Here the file is
    0600 and ``~/.ray`` 0700; a new token is written the way Ray writes one. A folder named by
    ``RAY_AUTH_TOKEN_PATH`` is left as it is (the file in it is still made 0600). Nothing is
    done when the token comes from ``RAY_AUTH_TOKEN``.

    Returns:
        The token file, or None when ``RAY_AUTH_TOKEN`` is set.
    """
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return None
    path = token_path()
    if "RAY_AUTH_TOKEN_PATH" not in os.environ:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _tighten(path.parent, 0o700)
    if not path.exists():
        from ray._private.authentication.authentication_token_generator import (
            generate_new_authentication_token,
        )

        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another run wrote it meanwhile
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(generate_new_authentication_token())
    _tighten(path, 0o600)
    return path


def _tighten(path: Path, mode: int) -> None:
    """Removes every permission of ``path`` beyond ``mode`` (logged; a file of another owner is
    left as it is, with a warning)."""
    current = path.stat().st_mode & 0o777
    if current & ~mode == 0:
        return
    try:
        path.chmod(current & mode)
    except PermissionError:
        logger.warning("%s is mode %o and not ours to change: others may read it", path, current)
        return
    logger.warning("%s was mode %o; made it %o (only its owner may read it)", path, current, mode)


AUTH_PROBE_TIMEOUT_S = 5.0


def check_cluster_uses_tokens(address: str, timeout_s: float = AUTH_PROBE_TIMEOUT_S) -> None:
    """Refuses a cluster whose GCS answers a request that carries no token.

    Such a head was started without token authentication (a plain ``ray start --head``): anyone
    on its network can run code on it, and a driver that joins with a token sees every actor it
    creates cancelled. An unreachable head is left for ``ray.init`` to report.

    Raises:
        ConfigError: naming ``cluster.address`` and how to start the head.
    """
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    target = address.removeprefix("ray://")
    if ":" not in target:  # "auto": Ray finds the address itself
        return
    with grpc.insecure_channel(target) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout_s)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAUTHENTICATED:
                logger.debug("cluster auth probe of %s: %s", target, err.code())
            return
    raise ConfigError(
        "cluster.address",
        f"the cluster at {target} does not use token authentication; start the head with "
        "scripts/start_head.sh",
    )


def check_join(address: str) -> None:
    """Checks, before joining the cluster at ``address``, that the cluster asks for a token and
    that there is one to join with.

    The cluster is asked first: a head without token authentication has no token to copy, so
    the way out is to start the head again, whether or not this machine holds a token.

    Raises:
        ConfigError: naming ``cluster.address`` and the way out.
    """
    check_cluster_uses_tokens(address)
    _require_cluster_token()


def _require_cluster_token() -> None:
    """Raises ConfigError unless Ray can find a cluster token (in the order Ray looks)."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return
    path_from_env = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = token_path()
    try:
        if path.read_text().strip():
            return
    except OSError:
        pass
    where = (
        f"RAY_AUTH_TOKEN_PATH={path}" if path_from_env else f"{path} (RAY_AUTH_TOKEN_PATH unset)"
    )
    raise ConfigError(
        "cluster.address",
        f"joining a cluster needs its token, but none was found: RAY_AUTH_TOKEN is unset and "
        f"{where} is missing or empty; copy the head's token file there or set RAY_AUTH_TOKEN_PATH",
    )


def init_ray(cfg: ClusterConfig, extra_cpus_needed: float = 0.0) -> dict[str, Any]:
    """Starts an embedded local Ray (``cfg.address`` None) or joins a running cluster.

    A local Ray binds to 127.0.0.1 only: a one-machine run needs no outside connections. A
    cluster is joined with token authentication, whatever ``RAY_AUTH_MODE`` says: the token comes
    from ``RAY_AUTH_TOKEN``, else the file at ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``.

    Args:
        cfg: Cluster settings.
        extra_cpus_needed: Logical CPUs the run's actors reserve; a local Ray gets at least
            this many so that every actor can be placed on a small machine.

    Returns:
        Ray's context info (addresses of the node that was started or joined).

    Raises:
        ConfigError: ``cluster.address`` is set but no cluster token can be found.
    """
    with _keep_own_sigterm_handler(), _ray_processes_in_their_own_session():
        return _init_ray(cfg, extra_cpus_needed)


class _OwnSessionPopen(ray_services.ConsolePopen):
    """Ray's process launcher, starting each process in a session of its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["start_new_session"] = True
        super().__init__(*args, **kwargs)


@contextmanager
def _ray_processes_in_their_own_session() -> Iterator[None]:
    """Starts a local Ray's processes (GCS, raylet, agents; workers inherit the raylet's) outside
    the driver's process group and session.

    A signal to the driver's group (systemd's KillMode=control-group, ``timeout``, Slurm, a closed
    terminal's SIGHUP) then reaches the driver alone, which stops gracefully and shuts Ray down
    after its final checkpoint; in the group, Ray would die first and the driver hang on it.
    Ray's own fate-sharing still ends them if the driver is killed.
    """
    launcher = ray_services.ConsolePopen
    ray_services.ConsolePopen = _OwnSessionPopen
    try:
        yield
    finally:
        ray_services.ConsolePopen = launcher


@contextmanager
def _keep_own_sigterm_handler() -> Iterator[None]:
    """Keeps a SIGTERM handler the process installed in place while Ray starts or joins.

    ``ray.init`` first replaces the SIGTERM handler with one that exits at once (``sys.exit``),
    then spends seconds starting a node or connecting: a SIGTERM in that span would end a run
    without its summary instead of stopping it gracefully. Without a Python handler of the
    process's own, Ray installs its handler as usual.
    """
    if not callable(signal.getsignal(signal.SIGTERM)):
        yield
        return
    setter = ray_utils.set_sigterm_handler
    ray_utils.set_sigterm_handler = lambda _handler: None
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = setter


def _init_ray(cfg: ClusterConfig, extra_cpus_needed: float) -> dict[str, Any]:
    if cfg.address is None:
        num_cpus = cfg.num_cpus or max(os.cpu_count() or 1, int(-(-extra_cpus_needed // 1)))
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # The local node's processes inherit the driver's environment. A job-level runtime_env
        # would keep Ray's prestarted worker processes from hosting the run's actors (each
        # actor would start a process of its own, and the prestarted ones would idle).
        os.environ.setdefault(*QUIET_WARNINGS)
        if os.environ.get("RAY_AUTH_MODE", "token").lower() == "token":
            private_token_file()  # before Ray would write one readable by every local user
        context = ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=cfg.include_dashboard,
            dashboard_host=LOOPBACK,
            _node_ip_address=LOOPBACK,
            log_to_driver=True,
            configure_logging=False,
        )
    else:
        check_join(cfg.address)
        private_token_file()
        os.environ["RAY_AUTH_MODE"] = "token"
        # Ray reads RAY_AUTH_MODE into its config when it is imported; re-read it, as Ray itself
        # does when it turns token authentication on for a new local cluster.
        RayConfig.initialize("")
        # Processes on the game PCs do not inherit the driver's environment.
        runtime_env = {"env_vars": dict([QUIET_WARNINGS])}
        context = ray.init(address=cfg.address, runtime_env=runtime_env, log_to_driver=True)
    return dict(context.address_info)


@dataclass(frozen=True)
class ActorStatus:
    """An actor's lifecycle as the cluster's control store (GCS) records it."""

    state: str
    """ALIVE, RESTARTING, DEPENDENCIES_UNREADY, PENDING_CREATION or DEAD (never coming back)."""
    restarts: int
    """How often Ray restarted it."""

    @property
    def gone(self) -> bool:
        """Dead for good: restarts exhausted or restarts not allowed."""
        return self.state == "DEAD"


def actor_status(handle: Any) -> ActorStatus | None:
    """The GCS record of an actor: the one source of restart counts; None if unreadable.

    Reading it is a short request to the GCS; it never waits for the actor itself.
    """
    from ray._private import state

    try:
        info = state.actors(actor_id=handle._actor_id.hex())
    except Exception as err:  # noqa: BLE001 - a GCS hiccup must not stop training
        logger.debug("actor status unavailable: %s", err)
        return None
    if not info:
        return None
    return ActorStatus(str(info.get("State", "")), int(info.get("NumRestarts", 0)))


def alive_nodes() -> dict[str, str] | None:
    """The cluster's alive nodes as ``{node id: address}``, from the GCS; None if unreadable."""
    try:
        return {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
    except Exception as err:  # noqa: BLE001 - a GCS hiccup must not stop training
        logger.debug("node list unavailable: %s", err)
        return None


def missing_local_resources(resources: dict[str, float]) -> dict[str, float]:
    """Custom resources (of ``resources``) that no node of the connected cluster offers enough of."""
    totals = ray.cluster_resources()
    return {name: need for name, need in resources.items() if totals.get(name, 0.0) < need}


def on_this_node() -> NodeAffinitySchedulingStrategy:
    """A scheduling strategy that pins an actor to the driver's node (learner, replay, weights)."""
    return NodeAffinitySchedulingStrategy(
        node_id=ray.get_runtime_context().get_node_id(), soft=False
    )


def actor_name_prefix() -> str:
    """A prefix that makes this run's actor names unique in a shared cluster."""
    return f"soulsai-{uuid.uuid4().hex[:8]}"


def ray_running() -> bool:
    """Whether this process is connected to Ray already (a test's or a tool's cluster)."""
    return ray.is_initialized()


def shutdown_ray() -> None:
    """Disconnects from (and, for a local Ray, stops) Ray; safe to call twice."""
    if ray.is_initialized():
        ray.shutdown()
