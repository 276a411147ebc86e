"""A LAN of network namespaces: a head and game PCs joined with the scripts a user runs."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ray_settings import NODE_TIMEOUT
from readme_ports import readme_ports

from soulsai_bench.lan import Host, Lan, can_build_a_lan  # shared with `soulsai_bench scale`

GAME_PCS = 2


@dataclass
class Cluster:
    """A running LAN cluster: the head, the game PCs and where their logs are."""

    lan: Lan
    head: Host
    pcs: list[Host]
    token: Path
    python: str = sys.executable

    def script(self, host: Host, name: str, *args: str, timeout: float = 180, **env: str):
        return self.lan.script(host, name, *args, timeout=timeout, **env)

    def join(self, pc: Host, token: Path, *extra: str, **env: str):
        return self.lan.join(pc, self.head, token, *extra, **env)

    def token_copy(self, host: Host) -> Path:
        return self.lan.copy_token(self.token, host)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Head at 10.77.0.1, game PCs at .11, .12, each behind a firewall that admits only the
    README's ports; the head started by start_head.sh, the PCs joined by join_cluster.sh."""
    reason = can_build_a_lan()
    if reason is not None:
        pytest.skip(reason)
    lan = Lan()
    try:
        ports = readme_ports()
        head = lan.add_host("head", 1)
        pcs = [lan.add_host(f"pc{i}", 10 + i) for i in range(1, GAME_PCS + 1)]
        lan.firewall(head, ports["head"])
        for pc in pcs:
            lan.firewall(pc, ports["pc"])
        token = head.root / "secret" / "auth_token"
        cluster = Cluster(lan, head, pcs, token)
        started = cluster.script(
            head,
            "start_head.sh",
            "--node-ip",
            head.ip,
            "--num-cpus",
            "2",
            RAY_AUTH_TOKEN_PATH=str(token),
            **NODE_TIMEOUT,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        for pc in pcs:
            joined = cluster.join(pc, cluster.token_copy(pc))
            assert joined.returncode == 0, joined.stdout + joined.stderr
        wait_for_nodes(cluster, 1 + GAME_PCS)
        yield cluster
    finally:
        lan.close()


def wait_for_nodes(cluster: Cluster, count: int, timeout_s: float = 60) -> None:
    code = (
        "import ray; ray.init(address='auto', logging_level='ERROR');"
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    env = cluster.lan.env(
        cluster.head, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(cluster.token)
    )
    deadline = time.monotonic() + timeout_s
    while True:
        done = cluster.lan.run(cluster.head, [cluster.python, "-c", code], env, timeout=60)
        alive = done.stdout.strip().splitlines()[-1:] if done.returncode == 0 else []
        if alive == [str(count)]:
            return
        assert time.monotonic() < deadline, f"{count} nodes never alive: {done.stdout}{done.stderr}"
        time.sleep(1)
