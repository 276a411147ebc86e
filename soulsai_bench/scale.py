"""``python -m soulsai_bench scale``: how DQN's aggregate env steps/s grow with game PCs.

For each N it runs DQN with N rollout actors on a latency-bound env (a game at a fixed step
rate) across simulated nodes of a local multi-node cluster and reports aggregate env steps/s
against N x rate, the learner's update rate, the model lag and how long a weight publish takes
to reach the actors (p50/p99). With ``--hosts`` the game PCs are real network hosts (namespaces
joined by the scripts a user runs; see :mod:`soulsai_bench.scale_hosts`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

WARMUP_S = 2.0
"""Seconds between every actor having installed published weights and the measurement window."""
REPORT_WAIT_S = 60.0
"""Longest wait for a learner call to report, at each end of the measurement window."""


def scale_config(actors: int, rate: float, address: str, overrides: Sequence[str] = ()) -> Any:
    """DQN on a game-rate Acrobot with ``actors`` rollout actors on ``soulsgym`` nodes;
    ``overrides`` (Hydra's, as for ``train.py``) come last."""
    from soulsai_ray.compose import compose_config

    return compose_config(
        "dqn",
        "cartpole",
        [
            # Acrobot: 500-step episodes even for a poor policy, so resets hardly count
            "env.id=Acrobot-v1",
            f"env.step_latency_s={1.0 / rate}",
            "env.actor_resources={soulsgym: 1}",
            # settings for a real-time env, as in conf/algo_env/dqn_iudex.yaml
            "algo.hidden_sizes=[128,128]",
            "algo.learning_starts=500",
            "algo.batch_size=64",
            "algo.replay_ratio=64",
            "algo.weight_sync_every=1",
            "algo.push_every=16",
            "algo.collect_steps=64",
            "algo.collect_time_s=0.5",  # short calls: the measurement sees steps within 0.5 s
            "algo.ratio_slack_steps=null",
            f"cluster.address={address}",
            f"cluster.num_rollout_actors={actors}",
            "cluster.rollout_num_cpus=0",
            "stop.env_steps=null",
            "stop.time_s=3600",
            "stop.return_mean=null",
            "checkpoint.every_updates=1000000000",
            "telemetry.console=false",
            "telemetry.prometheus=false",
            *overrides,
        ],
    )


class SteadyWindow:
    """Measures a running DQN loop's rates over ``seconds`` once every actor syncs weights and the
    learner trains, then asks the loop to stop (also when the measurement fails)."""

    def __init__(self, loop: Any, actors: int, seconds: float) -> None:
        self.loop, self.actors, self.seconds = loop, actors, seconds
        self.rates: dict[str, float] = {}
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._measure, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _measure(self) -> None:
        loop = self.loop
        try:
            while loop.stop_requested is None and (
                not hasattr(loop, "fleet")
                or loop.fleet.num_alive < self.actors
                or not loop.sync_latencies
                or loop.counters.updates == 0  # replay still filling to learning_starts
            ):
                time.sleep(0.1)
            if loop.stop_requested is not None:
                return
            time.sleep(WARMUP_S)
            c = loop.counters
            self._next_report()  # the window opens and closes as a learner call reports, so it
            t0, steps0, updates0 = time.monotonic(), c.env_steps, c.updates  # counts whole calls
            lag0, samples0 = c.model_lag_sum, c.model_lag_samples
            time.sleep(self.seconds)
            self._next_report()
            dt = time.monotonic() - t0
            self.rates.update(
                steps_per_s=(c.env_steps - steps0) / dt,
                updates_per_s=(c.updates - updates0) / dt,
                model_lag=(c.model_lag_sum - lag0) / max(c.model_lag_samples - samples0, 1),
            )
        except BaseException as err:  # reported by the caller once the run has ended
            self.error = err
        finally:
            loop.stop("benchmark window over")

    def _next_report(self) -> None:
        """Waits (up to `REPORT_WAIT_S`) until the learner's update count moves: it moves by a
        whole learner call (up to ``updates_per_call`` updates) at a time."""
        c, deadline = self.loop.counters, time.monotonic() + REPORT_WAIT_S
        before = c.updates
        while c.updates == before and self.loop.stop_requested is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the learner reported no update within {REPORT_WAIT_S:.0f}s")
            time.sleep(0.01)


def scale_once(
    actors: int, nodes: int, rate: float, seconds: float, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """DQN with ``actors`` latency-bound rollout actors spread over ``nodes`` simulated game PCs."""
    import ray
    from ray.cluster_utils import Cluster

    from soulsai_ray.experiment import build_experiment

    per_node = -(-actors // nodes)
    head = {"num_cpus": 2, "node_ip_address": "127.0.0.1", "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    work = tempfile.TemporaryDirectory(prefix=f"bench_scale_{actors}_")
    try:
        for _ in range(nodes):
            cluster.add_node(
                num_cpus=per_node, resources={"soulsgym": per_node}, node_ip_address="127.0.0.1"
            )
        ray.init(address=cluster.address)
        cfg = scale_config(actors, rate, cluster.address, overrides)
        experiment = build_experiment(cfg, Path(work.name))  # joins the cluster this process is on
        window = SteadyWindow(experiment.loop, actors, seconds)
        window.start()
        summary = experiment.run()
    finally:
        ray.shutdown()
        cluster.shutdown()
        work.cleanup()
    if not window.rates:
        raise RuntimeError(f"no steady window with {actors} actors") from window.error
    limit = actors * rate
    return {
        "actors": actors,
        "limit_steps_per_s": limit,
        "efficiency": window.rates["steps_per_s"] / limit,
        **window.rates,
        "weight_sync_p50_s": summary["weight_sync_p50_s"],
        "weight_sync_p99_s": summary["weight_sync_p99_s"],
    }


def cmd_scale(args: argparse.Namespace) -> None:
    if args.hosts:
        from soulsai_bench.scale_hosts import cmd_scale_hosts

        cmd_scale_hosts(args)
        return
    print(
        f"latency-bound env at {args.rate:g} steps/s per actor, {args.nodes} simulated nodes, "
        "DQN learning"
    )
    print(" actors  steps/s  limit  efficiency  updates/s  model lag  sync p50  sync p99")
    rows = []
    for n in args.actors:
        r = scale_once(n, min(args.nodes, n), args.rate, args.seconds, args.override)
        rows.append(r)
        print(
            f"{n:7d} {r['steps_per_s']:8.1f} {r['limit_steps_per_s']:6.0f} {r['efficiency']:11.3f} "
            f"{r['updates_per_s']:10.1f} {r['model_lag']:10.2f} {r['weight_sync_p50_s'] * 1e3:7.1f}ms "
            f"{r['weight_sync_p99_s'] * 1e3:7.1f}ms",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
