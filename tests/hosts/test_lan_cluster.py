"""The README's multi-machine steps across real network hosts (namespaces), with firewalls."""

from __future__ import annotations

import json

from conftest import ROOT, SCRIPTS, readme_ports

FAKE_SOULS = "soulsai_ray.envs.fake_souls:soulsai_ray/FakeSouls-v0"
ENV_STEPS = 600


def test_dqn_trains_on_game_pcs_over_a_lossy_lan_with_only_the_documented_ports_open(cluster):
    lan, head = cluster.lan, cluster.head
    impaired = lan.impair(cluster.pcs[0], loss_pct=1.0, delay_ms=30, jitter_ms=10)  # Wi-Fi
    run_dir = head.root / "run"
    command = [
        cluster.python,
        str(SCRIPTS / "train.py"),
        "algo=dqn",
        "env=iudex",
        "cluster=remote",
        f"env.id={FAKE_SOULS}",
        "env.kwargs=null",
        "env.step_latency_s=0.05",  # 20 steps/s, a game's rate
        f"stop.env_steps={ENV_STEPS}",
        "algo.learning_starts=200",
        "checkpoint.every_updates=200",
        "telemetry.console=false",
        f"hydra.run.dir={run_dir}",
    ]
    env = lan.env(head, RAY_AUTH_TOKEN_PATH=str(cluster.token))  # no RAY_AUTH_MODE: as a user
    done = lan.run(head, command, env, timeout=240)
    assert done.returncode == 0, (impaired, (done.stdout + done.stderr)[-4000:])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "env_steps" and summary["env_steps"] >= ENV_STEPS
    assert len(summary["samples_by_node"]) == len(cluster.pcs)  # both game PCs sampled
    assert summary["updates"] > 0 and summary["counters"]["batches_rejected"] == {}
    blocked = {host.name: lan.blocked_ports(host) for host in (head, *cluster.pcs)}
    assert not any(blocked.values()), f"training needed ports the README does not list: {blocked}"


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
    refused = cluster.join(stranger, wrong)
    assert refused.returncode != 0
    assert "token" in refused.stderr, refused.stdout + refused.stderr
    missing = cluster.join(stranger, stranger.root / "nowhere")
    assert missing.returncode != 0 and "no cluster token" in missing.stderr, missing.stderr
    assert not lan.pids(stranger), "a refused join left Ray processes behind"
    assert (ROOT / "scripts" / "join_cluster.sh").is_file()
