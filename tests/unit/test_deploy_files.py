"""The deployment files (docker, cluster scripts) parse and name only things that exist.

There is no Docker engine on the test machines, so the images are not built here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cluster_ports import (
    ENV_VARIABLES,
    PORTS_FILE,
    Port,
    numbers_of,
    port_rows,
    ray_start_port_options,
    read_ports,
)
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from soulsai_ray.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SECURITY_DOC = ROOT / "docs" / "security.md"
PORT_READERS = (
    "scripts/start_head.sh",
    "scripts/join_cluster.sh",
    "scripts/join_cluster.ps1",
    "docker/entrypoint.sh",
)
"""Every file that pins Ray's ports: each reads them from scripts/ports.env."""


@pytest.fixture(scope="module")
def ports() -> dict[str, Port]:
    return read_ports()


def _flags(ports: dict[str, Port], every_node_only: bool = False) -> dict[str, int]:
    """`ray start` port flags (without ``--``) and their values, as the ports file pins them."""
    return {
        p.flag: p.number
        for p in ports.values()
        if p.flag and (p.listens_on == "every node" or not every_node_only)
    }


def _stub_bin(folder: Path) -> Path:
    """A `ray` and a `python` in ``folder`` that only append their arguments and the head's
    metric-port environment variables to ``calls.jsonl``, which is returned."""
    folder.mkdir()
    calls = folder / "calls.jsonl"
    for name in ("ray", "python"):
        (folder / name).write_text(
            f"#!{sys.executable}\n"
            "import json, os, sys\n"
            f"with open({str(calls)!r}, 'a') as f:\n"
            f"    f.write(json.dumps({{'prog': {name!r}, 'args': sys.argv[1:], 'env': {{k: v for"
            " k, v in os.environ.items() if k.endswith('METRIC_PORT')}}) + '\\n')\n"
        )
        (folder / name).chmod(0o755)
    return calls


def _run(args: list[str], cwd: Path, home: Path, bin_dir: Path, **env: str):
    proc = subprocess.run(
        ["bash", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), **env},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _calls(record: Path, prog: str) -> list[dict]:
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    return [call for call in calls if call["prog"] == prog]


def _started_ports(args: list[str]) -> dict[str, int]:
    """The port flags of a `ray start` command line."""
    flags = dict(arg[2:].split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)
    return {name: int(value) for name, value in flags.items() if name.endswith("port")}


def test_dockerfile_copies_existing_paths():
    text = (DOCKER / "Dockerfile").read_text()
    sources = [src for line in re.findall(r"^COPY (.+)$", text, re.M) for src in line.split()[:-1]]
    assert sources, "no COPY lines found"
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    assert re.search(r'^ENTRYPOINT \["soulsai-entrypoint"\]', text, re.M)


def test_compose_file_is_consistent():
    compose_file = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    services = compose_file["services"]
    assert {"head", "rollout", "prometheus", "grafana"} <= set(services)
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    build = services["head"]["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).is_file()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith(".") and not host.endswith("outputs"):
                assert (DOCKER / host).exists(), f"{name} mounts missing {host}"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    assert services["rollout"]["command"] == ["rollout"]


def test_compose_head_overrides_make_a_valid_config():
    head = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())["services"]["head"]
    overrides = [o for o in head["command"][1:] if not o.startswith("hydra.")]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["cluster=remote", *overrides])
    parsed = parse_config(OmegaConf.to_container(cfg, resolve=True))
    assert parsed.cluster.address == "auto"
    assert parsed.cluster.num_rollout_actors == "auto"
    assert parsed.env.actor_resources == {"rollout": 1.0}
    entrypoint = (DOCKER / "entrypoint.sh").read_text()
    assert "--resources='{\"rollout\": 1}'" in entrypoint
    assert "scripts/train.py cluster=remote" in entrypoint


@pytest.mark.parametrize(
    "path",
    [
        DOCKER / "prometheus" / "prometheus.yml",
        DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml",
        DOCKER / "grafana" / "provisioning" / "dashboards" / "ray.yml",
    ],
)
def test_monitoring_files_parse(path):
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and data


@pytest.mark.parametrize(
    "script", ["scripts/start_head.sh", "scripts/join_cluster.sh", "docker/entrypoint.sh"]
)
def test_shell_scripts_are_valid_and_use_token_auth(script):
    subprocess.run(["bash", "-n", str(ROOT / script)], check=True)
    text = (ROOT / script).read_text()
    assert "RAY_AUTH" in text
    assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"


def test_windows_join_script_sets_what_windows_nodes_need():
    text = (ROOT / "scripts" / "join_cluster.ps1").read_text()
    for needle in (
        'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER = "1"',
        'RAY_AUTH_MODE = "token"',
        "RAY_AUTH_TOKEN_PATH",
        "soulsgym",
        "Get-Acl",
        '"S-1-1-0", "S-1-5-32-545", "S-1-5-11"',
        "icacls",
    ):
        assert needle in text


def test_ports_file_is_well_formed(ports):
    assert {"GCS_PORT", "DASHBOARD_PORT", *ENV_VARIABLES} <= set(ports)
    for name in ports:
        if name.startswith(("MIN_", "MAX_")):
            low, high = ports[f"MIN_{name[4:]}"], ports[f"MAX_{name[4:]}"]
            assert low.number < high.number, name
            assert (low.listens_on, low.open_to, low.what) == (
                high.listens_on,
                high.open_to,
                high.what,
            ), f"{name[4:]}: the ends of a range differ"
    numbers = [n for port in ports.values() for n in numbers_of(ports, port)]
    assert len(numbers) == len(set(numbers)), "two entries share a port"


def test_ports_file_pins_every_port_option_of_ray_start(ports):
    assert set(_flags(ports)) == ray_start_port_options()


def test_security_doc_table_is_the_ports_file(ports):
    rows = []
    for line in SECURITY_DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 5 and re.match(r"\d", cells[0]):
            rows.append((cells[0], cells[1].replace("`", ""), *cells[2:]))
    assert rows == port_rows(ports), f"docs/security.md's port table differs from {PORTS_FILE}"


def test_security_doc_firewall_examples_open_the_ports_file(ports):
    """The ufw line opens what the head admits; the Windows rules what a game PC admits."""
    text = SECURITY_DOC.read_text()

    def numbers(spec: str) -> set[int]:
        found = set()
        for part in spec.split(","):
            bounds = [int(n) for n in re.split(r"[:-]", part)]
            found |= set(range(bounds[0], bounds[-1] + 1))
        return found

    open_ports = [p for p in ports.values() if p.open_to != "nobody"]
    head = {n for p in open_ports for n in numbers_of(ports, p) if p.open_to != "head"}
    pc = {n for p in open_ports if p.listens_on == "every node" for n in numbers_of(ports, p)}
    ufw = re.search(r"ufw allow proto tcp from \S+ to any port (\S+)", text)
    windows = re.findall(r"-LocalPort (\S+)", text)
    assert ufw and numbers(ufw.group(1)) == head
    assert windows and set().union(*map(numbers, windows)) == pc


@pytest.mark.parametrize("path", PORT_READERS)
def test_port_readers_name_the_ports_file_and_no_port_number(path, ports):
    text = (ROOT / path).read_text()
    assert "ports.env" in text, f"{path} does not read scripts/ports.env"
    literal = {int(n) for n in re.findall(r"(?<![\w.-])\d{4,5}(?![\w.])", text)}
    every = {n for port in ports.values() for n in numbers_of(ports, port)}
    assert not literal & every, f"{path} writes ports itself: {sorted(literal & every)}"


def test_start_head_pins_the_files_ports_from_any_directory(tmp_path, ports):
    calls = _stub_bin(tmp_path / "bin")
    head = ROOT / "scripts" / "start_head.sh"
    proc = _run(
        [str(head), "--node-ip", "127.0.0.1"],
        tmp_path,
        tmp_path,
        tmp_path / "bin",
        RAY_AUTH_TOKEN="x" * 64,
    )
    (start,) = _calls(calls, "ray")
    assert start["args"][:2] == ["start", "--head"]
    assert _started_ports(start["args"]) == _flags(ports)
    assert start["env"] == {name: str(ports[name].number) for name in ENV_VARIABLES}
    assert f"127.0.0.1:{ports['GCS_PORT'].number}" in proc.stdout


def test_join_cluster_pins_the_files_ports_and_defaults_to_its_gcs_port(tmp_path, ports):
    calls = _stub_bin(tmp_path / "bin")
    token = tmp_path / "auth_token"
    token.write_text("c" * 64)
    token.chmod(0o600)
    _run(
        ["../scripts/join_cluster.sh", "127.0.0.1", "--token-file", str(token)],
        DOCKER,
        tmp_path,
        tmp_path / "bin",
    )
    head = f"127.0.0.1:{ports['GCS_PORT'].number}"
    assert [call["args"][1:] for call in _calls(calls, "python")][0] == [head]  # reachability
    (start,) = _calls(calls, "ray")
    assert f"--address={head}" in start["args"]
    assert _started_ports(start["args"]) == _flags(ports, every_node_only=True)


def test_docker_entrypoint_pins_the_files_ports(tmp_path, ports):
    calls = _stub_bin(tmp_path / "bin")
    token = {"RAY_AUTH_TOKEN": "d" * 64}
    _run(["docker/entrypoint.sh", "head", "algo=dqn"], ROOT, tmp_path, tmp_path / "bin", **token)
    _run(["docker/entrypoint.sh", "rollout"], ROOT, tmp_path, tmp_path / "bin", **token)
    head, rollout = _calls(calls, "ray")
    assert head["args"][:2] == ["start", "--head"]
    assert _started_ports(head["args"]) == _flags(ports)
    assert head["env"] == {name: str(ports[name].number) for name in ENV_VARIABLES}
    assert _calls(calls, "python")[0]["args"] == ["scripts/train.py", "cluster=remote", "algo=dqn"]
    assert f"--address=head:{ports['GCS_PORT'].number}" in rollout["args"]
    assert _started_ports(rollout["args"]) == _flags(ports, every_node_only=True)


def test_windows_join_script_reads_every_node_port_from_the_file(ports):
    text = (ROOT / "scripts" / "join_cluster.ps1").read_text()
    assert 'Get-Content (Join-Path $PSScriptRoot "ports.env")' in text
    assert '"${HeadAddress}:$($Pinned.GCS_PORT)"' in text
    pinned = dict(re.findall(r'"([a-z-]+port)" = \$Pinned\.([A-Z_]+)', text))
    assert pinned == {
        port.flag: port.name for port in ports.values() if port.listens_on == "every node"
    }


def test_compose_file_agrees_with_the_ports_file(ports):
    services = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())["services"]
    dashboard = ports["DASHBOARD_PORT"].number
    assert services["head"]["ports"] == [f"127.0.0.1:{dashboard}:{dashboard}"]
    assert services["rollout"]["environment"]["HEAD_ADDRESS"] == f"head:{ports['GCS_PORT'].number}"


def test_docker_env_is_git_ignored_and_created_private():
    assert "docker/.env" in (ROOT / ".gitignore").read_text().splitlines()
    for doc in ("docs/several-machines.md", "docker/docker-compose.yml"):
        lines = (ROOT / doc).read_text().splitlines()
        writes = [i for i, line in enumerate(lines) if "> docker/.env" in line]
        assert writes, f"{doc} no longer shows how docker/.env is made"
        for i in writes:
            assert "chmod 600 docker/.env" in lines[i - 1] + lines[i], f"{doc}:{i + 1}"


def _join(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Runs scripts/join_cluster.sh with ``args`` in a bare environment (HOME is ``tmp_path``)."""
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "join_cluster.sh"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )


def test_join_script_reports_unreachable_head_clearly(tmp_path):
    token = tmp_path / "token"
    token.write_text("x" * 32)
    proc = _join(tmp_path, "127.0.0.1:1", "--token-file", str(token))
    assert proc.returncode == 1
    assert "cannot reach the head at 127.0.0.1:1" in proc.stderr


def test_join_script_reports_missing_token(tmp_path):
    proc = _join(tmp_path, "127.0.0.1:1")
    assert proc.returncode == 1
    assert "no cluster token" in proc.stderr
