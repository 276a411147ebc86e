"""The deployment files (docker, cluster scripts) parse and name only things that exist.

There is no Docker engine on the test machines, so the images are not built here.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from soulsai_ray.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
PORT_PINS = {
    "scripts/start_head.sh": r"\[([a-z-]*port|[A-Z_]*METRIC_PORT)\]=(\d+)",
    "scripts/join_cluster.sh": r"\[([a-z-]*port)\]=(\d+)",
    "scripts/join_cluster.ps1": r'"([a-z-]*port)" = (\d+)',
    "docker/entrypoint.sh": r"(?:--)?([a-z-]*port|[A-Z_]*METRIC_PORT)=(\d+)",
}
"""How each deployment file pins a `ray start` port flag to a value."""
HEAD_ONLY_PORTS = {
    "port",
    "ray-client-server-port",
    "dashboard-port",
    "AUTOSCALER_METRIC_PORT",
    "DASHBOARD_METRIC_PORT",
}


def _pinned_ports(path: str) -> dict[str, int]:
    found = re.findall(PORT_PINS[path], (ROOT / path).read_text())
    pins = {name: int(port) for name, port in found}
    assert len(pins) == len(found), f"{path} pins a port twice"
    return pins


def _readme_security_ports() -> set[int]:
    section = (ROOT / "README.md").read_text().split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\|\s*\d", line)]
    return {int(n) for row in rows for n in re.findall(r"\d+", row.split("|")[1])}


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


@pytest.mark.parametrize("path", PORT_PINS)
def test_readme_security_table_lists_every_pinned_port(path):
    pinned = _pinned_ports(path)
    assert pinned, f"no pinned ports found in {path}"
    listed = _readme_security_ports()
    missing = {name: port for name, port in pinned.items() if port not in listed}
    assert not missing, f"{path} pins ports the README's Security table does not list: {missing}"


def test_readme_security_table_lists_only_ports_the_head_pins():
    assert _readme_security_ports() == set(_pinned_ports("scripts/start_head.sh").values())


def test_every_node_pins_the_same_ports():
    head = _pinned_ports("scripts/start_head.sh")
    assert set(head) > HEAD_ONLY_PORTS
    node = {name: port for name, port in head.items() if name not in HEAD_ONLY_PORTS}
    assert _pinned_ports("scripts/join_cluster.sh") == node
    assert _pinned_ports("scripts/join_cluster.ps1") == node
    assert _pinned_ports("docker/entrypoint.sh") == head


def test_docker_env_is_git_ignored_and_created_private():
    assert "docker/.env" in (ROOT / ".gitignore").read_text().splitlines()
    for doc in ("README.md", "docker/docker-compose.yml"):
        lines = (ROOT / doc).read_text().splitlines()
        writes = [i for i, line in enumerate(lines) if "> docker/.env" in line]
        assert writes, f"{doc} no longer shows how docker/.env is made"
        for i in writes:
            assert "chmod 600 docker/.env" in lines[i - 1] + lines[i], f"{doc}:{i + 1}"


def test_join_script_reports_unreachable_head_clearly(tmp_path):
    token = tmp_path / "token"
    token.write_text("x" * 32)
    proc = subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "join_cluster.sh"),
            "127.0.0.1:1",
            "--token-file",
            str(token),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 1
    assert "cannot reach the head at 127.0.0.1:1" in proc.stderr


def test_join_script_reports_missing_token(tmp_path):
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "join_cluster.sh"), "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 1
    assert "no cluster token" in proc.stderr
