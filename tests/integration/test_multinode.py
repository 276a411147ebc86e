"""Several nodes on one machine (ray.cluster_utils.Cluster): placement, elasticity, token auth.

The head offers no ``soulsgym`` resource; "game PC" nodes offer one each. All traffic stays on
127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
import ray
from ray.cluster_utils import Cluster
from ray_settings import REFUSED_AFTER_3_TRIES
from run_configs import run_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.config import EnvConfig
from soulsai_ray.experiment import build_experiment

LOOPBACK = "127.0.0.1"
GAME_PC = {"num_cpus": 1, "resources": {"soulsgym": 1}, "node_ip_address": LOOPBACK}


@pytest.fixture(scope="module")
def cluster():
    # tests/conftest.py turns token authentication on (RAY_AUTH_MODE=token, ~/.ray/auth_token),
    # as scripts/start_head.sh does.
    assert os.environ["RAY_AUTH_MODE"] == "token"
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "node_ip_address": LOOPBACK})
    ray.init(address=c.address)
    yield c
    ray.shutdown()
    c.shutdown()


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def _node_of(actor) -> str:
    return ray.get(actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))


def test_game_pcs_join_leave_and_return_during_dqn_training(cluster, tmp_path):
    pc1 = cluster.add_node(**GAME_PC)
    cfg = run_config(
        DQNConfig(
            hidden_sizes=[32], learning_starts=300, batch_size=32, replay_ratio=8, collect_steps=64
        ),
        EnvConfig(id="CartPole-v1", actor_resources={"soulsgym": 1}),
        time_s=170.0,
        actors="auto",
        rollout_num_cpus=1.0,  # as in a real run (ClusterConfig default): one CPU per actor
        log_every_s=0.25,
        address=cluster.address,
    )
    experiment = build_experiment(cfg, tmp_path)  # joins the test's cluster: Ray is up already
    loop = experiment.loop
    events: dict[str, object] = {}

    def samples_from(node) -> int:
        return loop.samples_by_node.get(node.node_id, 0)

    def scenario() -> None:
        try:
            _wait_for(lambda: hasattr(loop, "fleet"), 120, "the loop to start")
            _wait_for(lambda: samples_from(pc1) > 0, 120, "samples from the first game PC")
            pc2 = cluster.add_node(**GAME_PC)
            events["join_s"] = _wait_for(
                lambda: samples_from(pc2) > 0, 60, "an actor on the joining PC"
            )
            events["actors_after_join"] = len(loop.fleet)
            cluster.remove_node(pc2, allow_graceful=False)
            steps = loop.counters.env_steps
            _wait_for(lambda: loop.fleet.num_alive == 1, 60, "the lost actor to be noticed")
            _wait_for(lambda: loop.counters.env_steps > steps + 500, 60, "training to go on")
            pc3 = cluster.add_node(**GAME_PC)
            events["return_s"] = _wait_for(
                lambda: samples_from(pc3) > 0, 90, "the actor back on a new PC"
            )
            _wait_for(lambda: loop.fleet.num_alive == 2, 30, "two live actors again")
            events["nodes"] = (pc1.node_id, pc2.node_id, pc3.node_id)
        except AssertionError as err:
            events["error"] = str(err)
        finally:
            experiment.stop("scenario over")

    # Ray's node helpers install signal handlers, so the scenario runs in the main thread and
    # the training loop beside it.
    result: dict[str, dict] = {}
    thread = threading.Thread(target=lambda: result.update(summary=experiment.run()), daemon=True)
    thread.start()
    scenario()
    thread.join(timeout=120)
    summary = result["summary"]
    assert "error" not in events, events.get("error")
    assert summary["stop_reason"] == "scenario over"  # not the 170 s limit
    head = cluster.head_node.node_id
    assert {_node_of(a) for a in (loop.learner, loop.replay, loop.weight_store)} == {head}
    assert events["actors_after_join"] == 2
    assert events["join_s"] < 30 and events["return_s"] < 60
    by_node = summary["samples_by_node"]
    assert head not in by_node  # no rollout ever ran on the head
    assert all(by_node.get(node, 0) > 0 for node in events["nodes"])
    assert summary["counters"]["actor_failures"] >= 1
    tb = EventAccumulator(str(tmp_path / "tb"))
    tb.Reload()
    alive = [int(e.value) for e in tb.Scalars("dist/actors_alive")]
    assert 1 in alive[alive.index(2) :] and alive[-1] == 2, alive
    loop.close()


def _connect(address: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    code = f"import ray; ray.init(address={address!r}); print('connected', len(ray.nodes()))"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_a_process_without_the_token_cannot_connect(cluster, tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
    base["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ok = _connect(cluster.address, base)
    assert ok.returncode == 0 and "connected" in ok.stdout, ok.stderr[-2000:]
    wrong = tmp_path / "wrong_token"
    wrong.write_text("0" * 64)
    refused = {"RAY_AUTH_TOKEN_PATH": str(wrong), "RAY_AUTH_MODE": "token"}
    denied = _connect(cluster.address, {**base, **refused, **REFUSED_AFTER_3_TRIES})
    assert denied.returncode != 0
    assert "auth" in (denied.stderr + denied.stdout).lower()


def test_evaluation_plays_on_every_game_pc(cluster):
    """``evaluate.py cluster=remote``: one player per game PC, each plays its share there."""
    from soulsai_ray.algo_config import DQNConfig
    from soulsai_ray.config import ClusterConfig, EnvConfig
    from soulsai_ray.evaluation import PlaySetup, TrainedPolicy
    from soulsai_ray.loops.play import play_on_nodes
    from soulsai_ray.models import QNetwork, state_dict_to_numpy

    pcs = [cluster.add_node(**GAME_PC) for _ in range(2)]
    try:
        cluster.wait_for_nodes()
        algo = DQNConfig(hidden_sizes=[16])
        weights = state_dict_to_numpy(QNetwork(4, 2, [16], dueling=True))
        setup = PlaySetup(
            EnvConfig(id="CartPole-v1", actor_resources={"soulsgym": 1}),
            {1: TrainedPolicy(algo, weights, 3, "test")},
        )
        result = play_on_nodes(setup, ClusterConfig(num_rollout_actors="auto"), 5, seed=0)
        assert len(result.returns) == 5 and result.env_errors == 0
        assert all(length > 0 for length in result.lengths)
    finally:
        for pc in pcs:
            cluster.remove_node(pc)
