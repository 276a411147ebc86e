"""A user's tools against one running local training: Ray's own (`ray list actors`,
`ray status`), a real Prometheus pointed at the run's Ray by Ray's service discovery file (it
scrapes every metric the shipped Grafana dashboard shows for that kind of run), and Ctrl+C.

The tests share the run (one start of Ray and its dashboard instead of one per test); the
Ctrl+C test ends it and comes last in this file, which is the order pytest runs them in.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from live_run import (
    dashboard_url,
    kill_if_running,
    node_port,
    output_of,
    ray_cli,
    ray_process_args,
    session_dir,
    start_training,
    stop_training,
    wait_for_actor_classes,
)

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_WAIT_S = 90
LIVE_S = 300
"""The longest the shared run lasts; its three tests take about a minute."""
LEGACY_DISCOVERY_FILE = Path("/tmp/ray/prom_metrics_service_discovery.json")
"""Where Ray links its newest session's discovery file (the README's path); RAY_TMPDIR moves it."""
NOT_IN_A_DQN_CARTPOLE_RUN = {
    "ray_soulsai_perf_update_s": "PPO only",
    "ray_soulsai_dist_rejected_.+": "written once a batch is rejected; a healthy run rejects none",
}
"""Names (or name regexes) the dashboard queries that this DQN run does not export."""
SOULS_RUN_WITH_EVALUATIONS = (
    "env.id=soulsai_ray.envs.fake_souls:soulsai_ray/FakeSouls-v0",
    "env.angle_keys=['player_pose[3]','boss_pose[3]']",
    "eval.every_updates=20",
    "eval.episodes=1",
    "env.step_latency_s=0.002",
)
"""A SoulsGym-shaped env (wins, boss and player HP) with evaluations: every agent panel fills.
Paced at 500 steps/s per actor: the run lasts as long as its tests, and unpaced actors and
learner would spend that time using every core they get."""


def _dashboard_helpers():
    """tests/unit/test_grafana_dashboard.py, which reads the dashboard's PromQL."""
    path = ROOT / "tests" / "unit" / "test_grafana_dashboard.py"
    spec = importlib.util.spec_from_file_location("grafana_dashboard_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prometheus_binary() -> str:
    """The `prometheus` binary; skips the test without it, except in CI, where it fails."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (.ci/run installs the Debian package)")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scraped_names(api: str) -> set[str]:
    """Metric names Prometheus has stored so far (empty while it starts)."""
    try:
        with urllib.request.urlopen(f"{api}/api/v1/label/__name__/values", timeout=5) as reply:
            return set(json.load(reply)["data"])
    except OSError:
        return set()


def series_labels(api: str, name: str) -> list[dict[str, str]]:
    query = urllib.parse.urlencode({"match[]": name})
    with urllib.request.urlopen(f"{api}/api/v1/series?{query}", timeout=5) as reply:
        return json.load(reply)["data"]


def query(api: str, expr: str) -> list[dict]:
    """The result of an instant PromQL query (fails on a query Prometheus rejects)."""
    url = f"{api}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            answer = json.load(reply)
    except urllib.error.HTTPError as err:
        raise AssertionError(f"Prometheus rejects {expr!r}: {err.read()[:500]!r}") from err
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def panel_exprs(helpers, run_name: str) -> list[tuple[str, str]]:
    """Every panel query of the dashboard as ``(its PromQL, the PromQL with $run filled in)``."""
    dashboard = helpers.load_dashboard()
    exprs = [t["expr"] for panel in helpers.data_panels(dashboard) for t in panel["targets"]]
    return [(e, e.replace("$run", run_name)) for e in exprs]


def wait_for_discovery_file(session: Path, metrics_port: int, timeout_s: float = 60) -> Path:
    """The session's service discovery file, once it lists the node's metrics endpoint."""
    path = session / "prom_metrics_service_discovery.json"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            targets = [t for group in json.loads(path.read_text()) for t in group["targets"]]
        except (OSError, ValueError):
            targets = []
        if f"127.0.0.1:{metrics_port}" in targets:
            return path
        assert time.monotonic() < deadline, f"{path} does not list the run's node: {targets}"
        time.sleep(0.5)


def write_prometheus_config(tmp_path: Path, discovery_file: Path) -> Path:
    """A minimal prometheus.yml like the README's, scraping every second."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "ray",
                "file_sd_configs": [{"files": [str(discovery_file)], "refresh_interval": "1s"}],
            }
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class LiveRun:
    """A training run in the background and the arguments of the Ray processes it started."""

    proc: subprocess.Popen
    run_dir: Path
    ray_args: list[str]

    def assert_running(self) -> None:
        assert self.proc.poll() is None, f"the run has ended:\n{output_of(self.run_dir)}"


@pytest.fixture(scope="module")
def live_run(tmp_path_factory) -> Iterator[LiveRun]:
    """A SoulsGym-shaped DQN run with evaluations on the default local cluster, Ray's dashboard
    on; at most LIVE_S long (the Ctrl+C test ends it sooner)."""
    run_dir = tmp_path_factory.mktemp("live") / "run"
    proc = start_training(run_dir, *SOULS_RUN_WITH_EVALUATIONS, time_s=LIVE_S)
    try:
        yield LiveRun(proc, run_dir, ray_process_args(proc, run_dir))
    finally:
        kill_if_running(proc)


@pytest.mark.timeout(240)
def test_ray_list_actors_and_status_work_during_a_local_run(live_run):
    live_run.assert_running()
    proc, run_dir, ray_args = live_run.proc, live_run.run_dir, live_run.ray_args
    assert "--host=127.0.0.1" in ray_args, "the dashboard does not bind to 127.0.0.1"
    assert "--disable-frontend" not in ray_args, "the dashboard is off by default"
    address = f"127.0.0.1:{node_port(session_dir(ray_args), 'gcs_server_port')}"
    dashboard = dashboard_url(ray_args)
    assert dashboard.startswith("http://127.0.0.1:")

    wait_for_actor_classes(proc, run_dir, address)  # the GCS address, as `ray status` takes
    wait_for_actor_classes(proc, run_dir, dashboard)  # the dashboard's URL (README)

    status = ray_cli("status", "--address", address)
    assert status.returncode == 0, status.stderr[-2000:]
    assert "Node status" in status.stdout and "CPU" in status.stdout


@pytest.mark.timeout(240)
def test_prometheus_scrapes_every_dashboard_metric_of_a_dqn_run(live_run, tmp_path):
    binary = prometheus_binary()
    helpers = _dashboard_helpers()
    queried = set().union(
        *(helpers.metric_names(e) for e in helpers.dashboard_queries(helpers.load_dashboard()))
    )
    assert set(NOT_IN_A_DQN_CARTPOLE_RUN) <= queried, "an exclusion the dashboard no longer has"
    expected = queried - set(NOT_IN_A_DQN_CARTPOLE_RUN)

    live_run.assert_running()
    proc, run_dir = live_run.proc, live_run.run_dir
    prometheus = None
    try:
        session = session_dir(live_run.ray_args)
        discovery_file = wait_for_discovery_file(session, node_port(session, "metrics_export_port"))
        assert LEGACY_DISCOVERY_FILE.exists(), "Ray wrote no discovery file where the README says"

        config = write_prometheus_config(tmp_path, discovery_file)
        port = free_port()
        api = f"http://127.0.0.1:{port}"
        with open(tmp_path / "prometheus.out", "w") as log:
            prometheus = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline, names = time.monotonic() + SCRAPE_WAIT_S, set()
        while not expected <= names:
            assert prometheus.poll() is None, (tmp_path / "prometheus.out").read_text()[-3000:]
            assert proc.poll() is None, output_of(run_dir)
            assert time.monotonic() < deadline, (
                f"never scraped: {sorted(expected - names)}; "
                f"soulsai names: {sorted(n for n in names if 'soulsai' in n)}"
            )
            time.sleep(1)
            names = scraped_names(api)

        (node_series,) = series_labels(api, "ray_soulsai_dist_node_samples")
        assert node_series["node"] and node_series["run"] == run_dir.name
        time.sleep(3)  # rate() needs two samples of each series
        for expr, filled in panel_exprs(helpers, run_dir.name):
            result = query(api, filled)
            if helpers.metric_names(expr) <= expected:
                assert result, f"the dashboard's {expr!r} shows nothing for a DQN run"
    finally:
        if prometheus is not None:
            prometheus.terminate()
            try:
                prometheus.wait(timeout=30)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait(timeout=10)


def test_ctrl_c_ends_the_observed_run_with_a_summary(live_run):
    live_run.assert_running()
    summary = stop_training(live_run.proc, live_run.run_dir)
    assert summary["stop_reason"] == "SIGINT" and summary["env_steps"] > 0
