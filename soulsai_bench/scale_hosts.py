"""``python -m soulsai_bench scale --hosts N ...``: DQN across real network hosts (Linux network
namespaces).

For each N it builds a LAN (see :mod:`soulsai_bench.lan`): a head started with
``start_head.sh`` and N game PCs joined with ``join_cluster.sh`` (``{"soulsgym": 1}`` each, so
one rollout actor per PC), each PC's link impaired as asked (loss through nftables; delay only where the kernel has ``netem``).
``train.py algo=dqn env=iudex cluster=remote`` then trains on a SoulsGym-shaped env held to a
game's step rate, and the steady state is read from the run's TensorBoard log: the window starts
once every actor has sampled and lasts ``seconds``; then the run is stopped with SIGINT.

Reported per N: aggregate env steps/s against N x rate, learner updates/s, mean model lag,
weight-sync latency (publish -> installed in an actor) p50/p99, the size of one weight version
and the bytes the head sent on its link per weight publish (everything it sent in the window,
samples' acknowledgements and control traffic included, divided by the publishes).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from soulsai_bench import TRAIN_SCRIPT
from soulsai_bench.lan import Host, Lan, can_build_a_lan

FAKE_SOULS = "soulsai_ray.envs.fake_souls:soulsai_ray/FakeSouls-v0"
STARTUP_S = 90.0
"""Longest wait for every actor to sample before the measurement window."""
LOG_EVERY_S = 2.0
"""The driver's telemetry interval (the config's default), shortened for windows under 16 s so
that every window holds at least 8 points to fit rates to."""


def scale_hosts_once(
    hosts: int,
    rate: float,
    seconds: float,
    delay_ms: int,
    loss_pct: float,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """One LAN of ``hosts`` game PCs; returns the steady-state row (``overrides``: Hydra's, for
    the run on the head)."""
    lan = Lan()
    try:
        head = lan.add_host("head", 1)
        pcs = [lan.add_host(f"pc{i}", 10 + i) for i in range(1, hosts + 1)]
        link = "no impairment"
        if delay_ms or loss_pct:
            link = [lan.impair(pc, loss_pct, delay_ms, delay_ms // 3) for pc in pcs][0]
        token = head.root / "secret" / "auth_token"
        _check(
            lan.script(head, "start_head.sh", "--node-ip", head.ip, RAY_AUTH_TOKEN_PATH=str(token))
        )
        for pc in pcs:
            _check(lan.join(pc, head, lan.copy_token(token, pc)))
        row = _train(lan, head, hosts, token, rate, seconds, overrides)
        return {"hosts": hosts, "link": link, **row}
    finally:
        lan.close()


def _check(done: subprocess.CompletedProcess) -> None:
    if done.returncode != 0:
        script, ns = Path(done.args[5]).name, done.args[3]
        raise RuntimeError(f"{script} failed in {ns}:\n{done.stdout}{done.stderr}")


def _train(
    lan: Lan,
    head: Host,
    hosts: int,
    token: Path,
    rate: float,
    seconds: float,
    overrides: Sequence[str],
) -> dict[str, Any]:
    run_dir = head.root / "run"
    command = [
        sys.executable,
        str(TRAIN_SCRIPT),
        "algo=dqn",
        "env=iudex",
        "cluster=remote",
        f"env.id={FAKE_SOULS}",
        "env.kwargs=null",
        f"env.step_latency_s={1.0 / rate}",
        "algo.learning_starts=200",
        "checkpoint.every_updates=1000000000",
        "telemetry.console=false",
        "telemetry.prometheus=false",
        f"telemetry.log_every_s={min(LOG_EVERY_S, seconds / 8)}",
        "stop.env_steps=null",
        "stop.time_s=3600",  # ended by SIGINT after the window
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    env = lan.env(head, RAY_AUTH_TOKEN_PATH=str(token))
    log = head.root / "driver.log"
    driver = lan.start(head, command, env, log)
    tx = TxCounter(lan, head)
    try:
        window_start = _wait_until_all_sample(run_dir, hosts, driver, log)
        time.sleep(max(window_start - time.time(), 0))
        tx.start()
        time.sleep(seconds)
        sent = tx.stop()
        driver.send_signal(signal.SIGINT)
        if driver.wait(timeout=120) != 0:
            raise RuntimeError(f"training failed:\n{log.read_text()[-3000:]}")
    finally:
        if driver.poll() is None:
            driver.kill()
    summary = json.loads((run_dir / "summary.json").read_text())
    row = _window(run_dir, window_start, window_start + seconds)
    limit = hosts * rate
    return {
        "limit_steps_per_s": limit,
        "efficiency": row["steps_per_s"] / limit,
        **row,
        "weight_sync_p50_s": summary["weight_sync_p50_s"],
        "weight_sync_p99_s": summary["weight_sync_p99_s"],
        "weight_bytes": _weight_bytes(run_dir),
        "head_tx_bytes_per_publish": sent / max(row["publishes"], 1),
    }


class TxCounter:
    """Bytes sent by ``host`` on its LAN link (the kernel's counter) between start and stop."""

    def __init__(self, lan: Lan, host: Host) -> None:
        self.lan, self.host, self._start = lan, host, 0

    def _read(self) -> int:
        return int(
            self.lan.exec(self.host, "cat", f"/sys/class/net/{self.host.link}/statistics/tx_bytes")
        )

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> int:
        return self._read() - self._start


def _wait_until_all_sample(run_dir: Path, hosts: int, driver, log: Path) -> float:
    """Waits until every actor has sent samples; returns the wall time the window starts at."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if driver.poll() is not None:
            raise RuntimeError(f"training ended early:\n{log.read_text()[-3000:]}")
        if len(_scalars(run_dir, prefix="dist/node_samples/")) >= hosts:
            return time.time() + 2.0
        time.sleep(1.0)
    raise RuntimeError(f"not every game PC sampled within {STARTUP_S:.0f}s")


def _scalars(run_dir: Path, prefix: str = "") -> dict[str, list[tuple[float, int, float]]]:
    """(wall time, env steps, value) of every scalar tag starting with ``prefix``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list[tuple[float, int, float]]] = {}
    for events in sorted(run_dir.glob("**/events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            if tag.startswith(prefix):
                points = [(e.wall_time, e.step, e.value) for e in acc.Scalars(tag)]
                found.setdefault(tag, []).extend(points)
    return {tag: points for tag, points in found.items() if any(p[2] > 0 for p in points)}


def _window(run_dir: Path, start: float, end: float) -> dict[str, float]:
    """Rates over the points logged between ``start`` and ``end`` (wall time).

    Env steps arrive in rollout reports of a few seconds each, so rates are least-squares slopes
    over every point in the window rather than differences of its two ends.
    """
    import numpy as np

    scalars = _scalars(run_dir)

    def points(tag: str) -> np.ndarray:
        inside = [p for p in scalars.get(tag, []) if start <= p[0] <= end]
        if len(inside) < 3:
            raise RuntimeError(f"too few {tag} points in the window")
        return np.asarray(inside, dtype=np.float64)

    updates = points("progress/updates")
    versions = points("dist/weight_version")
    lag = [p[2] for p in scalars.get("dist/model_lag_mean", []) if start <= p[0] <= end]
    return {
        "window_s": float(updates[-1, 0] - updates[0, 0]),
        "steps_per_s": float(np.polyfit(updates[:, 0], updates[:, 1], 1)[0]),
        "updates_per_s": float(np.polyfit(updates[:, 0], updates[:, 2], 1)[0]),
        "model_lag": float(np.mean(lag)) if lag else float("nan"),
        "publishes": float(versions[-1, 2] - versions[0, 2]),
    }


def _weight_bytes(run_dir: Path) -> int:
    """Bytes of one weight version: the run's Q-network for its env, as the learner publishes it."""
    import numpy as np
    from omegaconf import OmegaConf

    from soulsai_ray.algo_config import DQNConfig
    from soulsai_ray.config import EnvConfig
    from soulsai_ray.envs.factory import make_env
    from soulsai_ray.models import q_network, state_dict_to_numpy

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    env_cfg = EnvConfig(id=cfg.env.id, angle_keys=list(cfg.env.angle_keys))
    env = make_env(env_cfg)
    obs_dim, num_actions = int(np.prod(env.observation_space.shape)), int(env.action_space.n)
    env.close()
    algo = DQNConfig(
        hidden_sizes=list(cfg.algo.hidden_sizes),
        dueling=bool(cfg.algo.dueling),
        layer_norm=bool(cfg.algo.get("layer_norm", False)),
        normalize_obs=bool(cfg.algo.get("normalize_obs", False)),
    )
    net = q_network(algo, obs_dim, num_actions)
    return int(sum(w.nbytes for w in state_dict_to_numpy(net).values()))


def cmd_scale_hosts(args: Any) -> None:
    reason = can_build_a_lan()
    if reason is not None:
        raise SystemExit(f"scale --hosts needs network namespaces: {reason}")
    print(
        f"game-PC namespaces at {args.rate:g} steps/s each, links asked for: {args.delay_ms} ms "
        f"delay (needs netem), {args.loss_pct:g}% loss; DQN (env=iudex settings) learning on the head"
    )
    header = (
        " hosts  steps/s  limit  efficiency  updates/s  model lag  sync p50  sync p99  "
        "weights  head tx/publish"
    )
    print(header)
    rows = []
    for n in args.hosts:
        r = scale_hosts_once(
            n, args.rate, args.seconds, args.delay_ms, args.loss_pct, args.override
        )
        rows.append(r)
        print(
            f"{n:6d} {r['steps_per_s']:8.1f} {r['limit_steps_per_s']:6.0f} "
            f"{r['efficiency']:11.3f} {r['updates_per_s']:10.1f} {r['model_lag']:10.2f} "
            f"{r['weight_sync_p50_s'] * 1e3:7.1f}ms {r['weight_sync_p99_s'] * 1e3:7.1f}ms "
            f"{r['weight_bytes'] / 1e3:6.1f}kB {r['head_tx_bytes_per_publish'] / 1e3:12.1f}kB",
            flush=True,
        )
        print(f"        link: {r['link']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
