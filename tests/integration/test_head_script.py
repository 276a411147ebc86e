"""scripts/start_head.sh and scripts/join_cluster.sh as a user runs them, and a driver joining.

The head is a real `ray start` on 127.0.0.1 with its own token file, RAY_TMPDIR and free ports, in
a session of its own: teardown kills that session's processes by pid. A stub `ray` records what the
script would start where a real head is not needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cluster_ports import ray_start_port_options
from ray_settings import REFUSED_AFTER_3_TRIES

from soulsai_ray.cluster import init_ray
from soulsai_ray.config import ClusterConfig
from soulsai_ray.typed_config import ConfigError

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the cluster scripts are bash scripts for Linux"
)

ROOT = Path(__file__).resolve().parents[2]
START_HEAD = ROOT / "scripts" / "start_head.sh"
JOIN_CLUSTER = ROOT / "scripts" / "join_cluster.sh"
LOOPBACK = "127.0.0.1"
SINGLE_PORTS = (
    "port",
    "ray-client-server-port",
    "dashboard-port",
    "object-manager-port",
    "node-manager-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
    "dashboard-agent-listen-port",
)
WORKER_PORTS = 20
"""Size of the worker port range the test head gets."""
HEAD_ONLY = {"port", "ray-client-server-port", "dashboard-port"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _script_env(home: Path, **extra: str) -> dict[str, str]:
    """The test's environment without any Ray auth or address setting, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_AUTH", "RAY_ADDRESS", "RAY_TMPDIR"))
    }
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    env["HOME"] = str(home)
    env.update(extra)
    return env


def _free_port_block(size: int) -> int:
    """First port of ``size`` consecutive ports that nothing on 127.0.0.1 uses right now."""
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(20000, 30000 - size)
        sockets = []
        try:
            for port in range(base, base + size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind((LOOPBACK, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {size} consecutive free ports found")


def _session_pids(sid: int) -> list[int]:
    """Pids of the processes in session ``sid`` (field 6 of /proc/PID/stat)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def _kill_session(sid: int, grace_s: float = 5.0) -> None:
    """Sends SIGTERM, then SIGKILL after ``grace_s``, to every process of session ``sid``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_pids(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while _session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _session_pids(sid):
            return


def _ray_processes_using(folder: Path) -> list[str]:
    """`ps` lines (full width) of processes whose command line names ``folder``."""
    ps = subprocess.run(
        ["ps", "-eww", "-o", "pid,sid,args"], capture_output=True, text=True, check=True
    )
    return [line for line in ps.stdout.splitlines() if str(folder) in line]


@dataclass
class Head:
    """A running head: its GCS address, pinned ports, token file, HOME, RAY_TMPDIR, script output."""

    address: str
    ports: dict[str, int]
    token: Path
    home: Path
    tmpdir: Path
    output: str


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    """A head started by scripts/start_head.sh, its token in a folder that does not exist yet."""
    base = Path(tempfile.mkdtemp(prefix="sh", dir="/tmp"))  # short: Ray's socket paths are limited
    home, tmpdir = base / "home", base / "ray"
    home.mkdir()
    token = base / "secret" / "auth_token"
    first = _free_port_block(len(SINGLE_PORTS) + WORKER_PORTS)
    ports = {name: first + i for i, name in enumerate(SINGLE_PORTS)}
    ports["min-worker-port"] = first + len(SINGLE_PORTS)
    ports["max-worker-port"] = first + len(SINGLE_PORTS) + WORKER_PORTS - 1
    flags = [arg for name, port in ports.items() for arg in (f"--{name}", str(port))]
    env = _script_env(home, RAY_TMPDIR=str(tmpdir), RAY_AUTH_TOKEN_PATH=str(token))
    proc = subprocess.Popen(
        ["bash", str(START_HEAD), "--node-ip", LOOPBACK, "--num-cpus", "1", *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, output
        yield Head(f"{LOOPBACK}:{ports['port']}", ports, token, home, tmpdir, output)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_session(proc.pid)
        survivors = _ray_processes_using(tmpdir)
        shutil.rmtree(base, ignore_errors=True)
        assert not survivors, f"Ray processes outlived the test: {survivors}"


def test_head_creates_a_private_token_where_ray_auth_token_path_points(head):
    assert head.token.is_file()
    assert _mode(head.token) == 0o600
    assert _mode(head.token.parent) == 0o700
    token = head.token.read_text().strip()
    assert len(token) == 64 and int(token, 16) >= 0, "expected 32 random bytes in hex"
    assert f"generated a new cluster token in {head.token}" in head.output
    assert f"RAY_AUTH_TOKEN_PATH={head.token} .venv/bin/python scripts/train.py" in head.output


def test_head_listens_on_every_pinned_port(head):
    expected = {name: port for name, port in head.ports.items() if "worker" not in name}
    deadline = time.monotonic() + 90
    closed = dict(expected)
    while closed and time.monotonic() < deadline:
        for name, port in list(closed.items()):
            try:
                socket.create_connection((LOOPBACK, port), timeout=1).close()
                del closed[name]
            except OSError:
                pass
        time.sleep(0.5)
    assert not closed, f"nothing listens on the pinned ports {closed}"
    running = "\n".join(_ray_processes_using(head.tmpdir))
    assert "gcs_server" in running and "raylet" in running, "teardown could not find the head"
    for name, port in expected.items():
        assert f"{port}" in head.output, f"firewall advice does not name {name} ({port})"


DRIVER = textwrap.dedent(
    """
    import sys
    import ray
    from soulsai_ray.cluster import init_ray, shutdown_ray
    from soulsai_ray.config import ClusterConfig

    init_ray(ClusterConfig(address=sys.argv[1]))
    print("nodes", len(ray.nodes()), "task", ray.get(ray.remote(lambda: 1 + 1).remote()))
    shutdown_ray()
    """
)


def test_driver_joins_the_head_without_setting_ray_auth_mode(head):
    env = _script_env(head.home, RAY_TMPDIR=str(head.tmpdir), RAY_AUTH_TOKEN_PATH=str(head.token))
    assert "RAY_AUTH_MODE" not in env
    plain = subprocess.run(
        [sys.executable, "-c", f"import ray; ray.init(address={head.address!r})"],
        env={**env, **REFUSED_AFTER_3_TRIES},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.returncode != 0 and "AuthenticationError" in plain.stderr, (
        "a plain ray.init now joins without token mode: this test no longer shows anything"
    )
    joined = subprocess.run(
        [sys.executable, "-c", DRIVER, head.address],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert joined.returncode == 0, joined.stderr[-3000:]
    assert "nodes 1 task 2" in joined.stdout


def test_driver_without_a_token_gets_a_config_error_naming_where_it_looked(tmp_path, monkeypatch):
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"cluster\.address: .*RAY_AUTH_TOKEN is unset") as err:
        init_ray(ClusterConfig(address=f"{LOOPBACK}:1"))
    assert str(tmp_path / ".ray" / "auth_token") in str(err.value)
    missing = tmp_path / "nowhere" / "auth_token"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(missing))
    with pytest.raises(ConfigError, match=f"RAY_AUTH_TOKEN_PATH={missing} is missing or empty"):
        init_ray(ClusterConfig(address=f"{LOOPBACK}:1"))
    assert "RAY_AUTH_MODE" not in os.environ


def _stub_ray(folder: Path) -> Path:
    """A `ray` that records its arguments and auth environment as JSON, and a `python` beside it."""
    folder.mkdir()
    record = folder / "ray_start.json"
    (folder / "ray").write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"json.dump({{'args': sys.argv[1:], 'env': {{k: v for k, v in os.environ.items()"
        f" if k.startswith('RAY_AUTH')}}}}, open({str(record)!r}, 'w'))\n"
    )
    (folder / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    for name in ("ray", "python"):
        (folder / name).chmod(0o755)
    return record


def test_head_tightens_an_existing_token_and_passes_every_pin_to_ray_start(tmp_path):
    token_dir = tmp_path / "shared"
    token_dir.mkdir(mode=0o755)
    token_dir.chmod(0o755)
    token = token_dir / "auth_token"
    token.write_text("a" * 64 + "\n")
    token.chmod(0o644)
    record = _stub_ray(tmp_path / "bin")
    proc = subprocess.run(
        ["bash", str(START_HEAD), "--node-ip", LOOPBACK],
        env=_script_env(
            tmp_path, RAY=str(tmp_path / "bin" / "ray"), RAY_AUTH_TOKEN_PATH=str(token)
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert _mode(token) == 0o600 and _mode(token_dir) == 0o700
    assert token.read_text() == "a" * 64 + "\n", "an existing token must be kept"
    assert f"tightened the token file {token} from mode 644 to 600" in proc.stderr
    assert f"tightened the token folder {token_dir} from mode 755 to 700" in proc.stderr
    started = json.loads(record.read_text())
    assert started["env"] == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    pinned = {
        arg[2:].split("=")[0]: int(arg.split("=")[1])
        for arg in started["args"]
        if arg.split("=")[0].endswith("-port") or arg.startswith("--port=")
    }
    assert pinned == {
        "port": 6379,
        "ray-client-server-port": 10001,
        "dashboard-port": 8265,
        "object-manager-port": 8076,
        "node-manager-port": 8077,
        "dashboard-agent-grpc-port": 8078,
        "runtime-env-agent-port": 8079,
        "metrics-export-port": 8080,
        "dashboard-agent-listen-port": 52365,
        "min-worker-port": 10002,
        "max-worker-port": 10999,
    }
    assert "--dashboard-host=127.0.0.1" in started["args"]


def test_scripts_pin_every_port_option_of_ray_start():
    options = ray_start_port_options()
    head_text, join_text = START_HEAD.read_text(), JOIN_CLUSTER.read_text()
    for option in options:
        assert f"[{option}]=" in head_text, f"start_head.sh does not pin --{option}"
        if option not in HEAD_ONLY:
            assert f"[{option}]=" in join_text, f"join_cluster.sh does not pin --{option}"


@pytest.mark.parametrize(
    ("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)], ids=["644", "640", "600"]
)
def test_join_script_warns_about_a_token_others_can_read(tmp_path, mode, warned):
    token = tmp_path / "auth_token"
    token.write_text("b" * 64)
    token.chmod(mode)
    proc = subprocess.run(
        ["bash", str(JOIN_CLUSTER), f"{LOOPBACK}:1", "--token-file", str(token)],
        env=_script_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0, "nothing listens on port 1: the join must fail"
    warning = f"warning: other users can read the cluster token {token} (mode {mode:o}); "
    assert (warning in proc.stderr) is warned, proc.stderr
    assert (f"run: chmod 600 {token}" in proc.stderr) is warned
    assert "cannot reach the head" in proc.stderr
