"""The README's multi-machine steps across real network hosts (namespaces), with firewalls."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from ray_settings import REFUSED_AFTER_3_TRIES
from readme_ports import ROOT, SCRIPTS, readme_ports

FAKE_SOULS = "soulsai_ray.envs.fake_souls:soulsai_ray/FakeSouls-v0"


def _train_command(cluster, run_dir, *overrides: str) -> list[str]:
    """The README's training command on the head, with a SoulsGym-shaped env at a game's rate."""
    return [
        cluster.python,
        str(SCRIPTS / "train.py"),
        "env=iudex",
        "cluster=remote",
        f"env.id={FAKE_SOULS}",
        "env.kwargs=null",
        "env.step_latency_s=0.05",  # 20 steps/s
        "algo.learning_starts=100",  # 100 env steps: learning 2.5 s after the first PC samples
        "checkpoint.every_updates=100",
        "telemetry.console=false",
        "algo.compile=false",  # a short run: compiling the update is test_compiled_step.py's
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]


def _driver_env(cluster) -> dict[str, str]:
    """The head's environment as a user has it: the token path, no RAY_AUTH_MODE."""
    return cluster.lan.env(cluster.head, RAY_AUTH_TOKEN_PATH=str(cluster.token))


def _wait(condition, timeout_s: float) -> bool:
    """Polls ``condition`` every 0.5 s; False if it is still false after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _raylet_running(lan, host) -> bool:
    return any("raylet" in _cmdline(pid) for pid in lan.pids(host))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def test_nothing_listens_on_the_lan_but_the_documented_ports(cluster):
    documented = readme_ports()["all"]
    for host in (cluster.head, *cluster.pcs):
        exposed = {
            port
            for address, port in cluster.lan.listening(host)
            if not address.startswith("127.") and address != "::1"
        }
        assert exposed, f"{host.name} listens on nothing: is Ray running?"
        assert exposed <= documented, f"{host.name} listens on {sorted(exposed - documented)}"


def test_a_join_with_a_wrong_or_missing_token_is_refused(cluster):
    lan = cluster.lan
    stranger = lan.add_host("stranger", 99)
    wrong = stranger.root / "wrong_token"
    wrong.write_text("0" * 64 + "\n")
    wrong.chmod(0o600)
    refused = cluster.join(stranger, wrong, **REFUSED_AFTER_3_TRIES)
    assert refused.returncode != 0
    assert "token" in refused.stderr, refused.stdout + refused.stderr
    missing = cluster.join(stranger, stranger.root / "nowhere")
    assert missing.returncode != 0 and "no cluster token" in missing.stderr, missing.stderr
    assert not lan.pids(stranger), "a refused join left Ray processes behind"
    assert (ROOT / "scripts" / "join_cluster.sh").is_file()


def test_game_pcs_train_over_a_lossy_lan_join_leave_and_drop_off_while_training_goes_on(cluster):
    """One run through what a LAN does to game PCs, with only the README's ports open: one PC is
    on a lossy, jittery link (Wi-Fi), a new PC joins mid-run, one is switched off for good, and
    the lossy one loses its link for longer than Ray's node timeout, then rejoins."""
    lan, head = cluster.lan, cluster.head
    leaving, cut = cluster.pcs
    impaired = lan.impair(cut, loss_pct=1.0, delay_ms=30, jitter_ms=10)
    run_dir = head.root / "run-faults"
    log = head.root / "faults.log"
    command = _train_command(cluster, run_dir, "stop.env_steps=null", "stop.time_s=600")
    driver = lan.start(head, command, _driver_env(cluster), log)
    events = DriverLog(log, driver)
    try:
        events.wait_for("rollout fleet grew to 2 actors", 120)  # both PCs, the lossy one too
        checkpoints = run_dir / "checkpoints"
        assert _wait(lambda: checkpoints.is_dir() and any(checkpoints.iterdir()), 120), (
            events.tail()
        )
        newcomer = lan.add_host("pc3", 13)
        lan.firewall(newcomer, readme_ports()["pc"])
        joined = cluster.join(newcomer, cluster.token_copy(newcomer))
        assert joined.returncode == 0, joined.stdout + joined.stderr
        events.wait_for(f"a node joined the cluster: {newcomer.ip}", 30)
        events.wait_for("rollout fleet grew to 3 actors", 30)

        lan.kill(leaving)  # switched off for good
        lan.link(cut, up=False)  # and this one's cable pulled for longer than the node timeout
        pulled = time.monotonic()
        events.wait_for(f"declared dead: {cut.ip}", 150)
        events.wait_for(f"declared dead: {leaving.ip}", 150)
        dead_after = time.monotonic() - pulled
        lan.link(cut, up=True)
        if not _wait(lambda: not _raylet_running(lan, cut), 30):
            lan.kill(cut)  # a raylet that never heard it was declared dead: the PC reboots
        backs = events.count("is back after")
        rejoined = cluster.join(cut, cut.root / "auth_token")
        assert rejoined.returncode == 0, rejoined.stdout + rejoined.stderr
        back = time.monotonic()
        events.wait_for(f"a node joined the cluster: {cut.ip}", 30)
        assert _wait(lambda: events.count("is back after") > backs, 60), events.tail()
        sampling_again_after = time.monotonic() - back
        driver.send_signal(signal.SIGINT)
        assert driver.wait(timeout=120) == 0, events.tail()
    finally:
        if driver.poll() is None:
            driver.kill()
    summary = json.loads((run_dir / "summary.json").read_text())
    print(
        f"PC declared dead {dead_after:.0f}s after its link went down; "
        f"sampling again {sampling_again_after:.0f}s after rejoining; its link: {impaired}"
    )
    assert summary["stop_reason"] == "SIGINT"
    by_node = summary["samples_by_node"]
    assert len(by_node) == 4 and all(n > 0 for n in by_node.values()), by_node  # pc2 came back new
    c = summary["counters"]
    assert (c["nodes_joined"], c["nodes_lost"]) == (2, 2), c
    assert c["actor_failures"] >= 2 and c["actor_restarts"] >= 1 and c["batches_rejected"] == {}
    # Ray starts the rejoined node's first worker (Python, torch, the env) while the head trains;
    # on a 2-core machine hosting every node that took 7-44 s, on a real PC it is the PC's own CPU
    assert sampling_again_after < 60
    blocked = {h.name: lan.blocked_ports(h) for h in (head, cut, newcomer)}
    assert not any(blocked.values()), f"training needed ports the README does not list: {blocked}"


class DriverLog:
    """The log of a driver running in the background, read as it grows."""

    def __init__(self, path: Path, driver) -> None:
        self.path, self.driver = path, driver

    def text(self) -> str:
        return self.path.read_text(errors="replace")

    def count(self, needle: str) -> int:
        return self.text().count(needle)

    def tail(self, chars: int = 4000) -> str:
        return self.text()[-chars:]

    def wait_for(self, needle: str, timeout_s: float) -> None:
        """Waits until the log contains ``needle``; fails (with the log's tail) on a timeout or
        if the driver exits first."""
        deadline = time.monotonic() + timeout_s
        while needle not in self.text():
            assert self.driver.poll() is None, f"the driver exited: {self.tail()}"
            assert time.monotonic() < deadline, f"never logged {needle!r}: {self.tail()}"
            time.sleep(0.5)
