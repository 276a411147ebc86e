"""``build_experiment``: the loop a config asks for, the run folder it prepares, and ``stop``.

Nothing here starts Ray: building a run only constructs its loop, and a serial run trains in
this process.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
import ray
from omegaconf import OmegaConf
from run_configs import run_config

from soulsai_ray.algo_config import DQNConfig, PPOConfig
from soulsai_ray.config import TrainConfig
from soulsai_ray.experiment import build_experiment, config_to_yaml
from soulsai_ray.loops.dqn_async import DQNAsyncLoop
from soulsai_ray.loops.ppo_sync import PPOSyncLoop
from soulsai_ray.loops.serial import SerialDQNLoop, SerialPPOLoop

DQN = DQNConfig(hidden_sizes=[16], learning_starts=64, batch_size=16, buffer_size=1000)
PPO = PPOConfig(hidden_sizes=[16], n_steps=32, epochs=1, minibatch_size=32)


def _cfg(algo, serial: bool) -> TrainConfig:
    cfg = run_config(algo, steps=10_000, serial=serial, actors=1, keep_last=2)
    cfg.validate()
    return cfg


@pytest.mark.parametrize(
    ("algo", "serial", "loop_cls"),
    [
        (DQN, True, SerialDQNLoop),
        (PPO, True, SerialPPOLoop),
        (DQN, False, DQNAsyncLoop),
        (PPO, False, PPOSyncLoop),
    ],
    ids=["serial-dqn", "serial-ppo", "local-dqn", "local-ppo"],
)
def test_the_builder_picks_the_loop_the_config_asks_for(algo, serial, loop_cls, tmp_path):
    run_dir = tmp_path / "run"  # created by the builder
    cfg = _cfg(algo, serial)
    experiment = build_experiment(cfg, run_dir)
    try:
        assert type(experiment.loop) is loop_cls
        assert experiment.cfg is cfg and experiment.run_dir == run_dir
        assert experiment.loop.recorder.run_dir == run_dir
        assert experiment.loop.recorder.checkpoints.keep_last == 2  # cfg.checkpoint.keep_last
        assert not ray.is_initialized()  # building starts nothing
        written = (run_dir / "config.yaml").read_text()
        assert written == config_to_yaml(cfg)
        saved = OmegaConf.create(written)
        assert saved.cluster.serial is serial and saved.algo.hidden_sizes == [16]
    finally:
        experiment.loop.recorder.telemetry.close()


def test_the_config_the_user_composed_is_saved_as_given(tmp_path):
    composed = "# as Hydra resolved it\nalgo:\n  name: dqn\n"
    experiment = build_experiment(_cfg(DQN, serial=True), tmp_path, composed)
    experiment.loop.recorder.telemetry.close()
    assert (tmp_path / "config.yaml").read_text() == composed
    assert experiment.loop.recorder.config_yaml == composed  # and into every checkpoint


def test_stop_keeps_the_first_reason(tmp_path):
    experiment = build_experiment(_cfg(DQN, serial=True), tmp_path)
    loop = experiment.loop
    experiment.loop.recorder.telemetry.close()
    assert loop.stop_requested is None
    assert loop.stop("first") is True
    assert loop.stop("second") is False
    experiment.stop("third")
    assert loop.stop_requested == "first"


@pytest.mark.parametrize("algo", [DQN, PPO], ids=["dqn", "ppo"])
def test_a_stopped_run_ends_after_its_step_with_a_checkpoint_and_the_reason(algo, tmp_path):
    """Stopped during its first step, a serial run finishes that step, writes a final
    checkpoint and a summary naming the reason, long before its 10k-step limit."""
    experiment = build_experiment(_cfg(algo, serial=True), tmp_path)
    loop = experiment.loop
    step = loop.step

    def step_then_stop() -> None:
        step()
        experiment.stop("enough")

    loop.step = step_then_stop
    summary = experiment.run()
    assert summary["stop_reason"] == "enough"
    assert 0 < summary["env_steps"] < 10_000
    assert summary["checkpoint"] is not None
    assert json.loads((tmp_path / "summary.json").read_text())["stop_reason"] == "enough"
    assert not ray.is_initialized()


def test_a_run_stopped_before_it_starts_writes_a_summary_but_no_checkpoint(tmp_path):
    experiment = build_experiment(_cfg(DQN, serial=True), tmp_path)
    experiment.stop("SIGTERM")
    summary = experiment.run()
    assert summary["stop_reason"] == "SIGTERM"
    assert summary["env_steps"] == 0 and summary["checkpoint"] is None
    assert (tmp_path / "summary.json").is_file()


def test_device_cuda_without_a_gpu_is_a_config_error_before_anything_starts(tmp_path):
    import torch

    from soulsai_ray.typed_config import ConfigError

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = replace(run_config(DQNConfig(hidden_sizes=[8]), steps=100, serial=True), device="cuda")
    with pytest.raises(ConfigError, match="^device: cuda was asked for"):
        build_experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_unknown_env_id_is_a_config_error_before_anything_starts(tmp_path):
    from soulsai_ray.typed_config import ConfigError

    for env_id in ("NoSuchEnv-v0", "CartPole-v9", "no_such_module:X-v0"):
        cfg = run_config(DQNConfig(hidden_sizes=[8]), env_id, steps=100, serial=True)
        with pytest.raises(ConfigError, match="^env.id: "):
            build_experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_folder_has_one_writer_and_a_finished_or_killed_run_frees_it(tmp_path):
    import subprocess
    import sys

    from soulsai_ray.typed_config import ConfigError

    cfg = run_config(DQNConfig(hidden_sizes=[8], learning_starts=50), steps=200, serial=True)
    first = build_experiment(cfg, tmp_path)
    with pytest.raises(ConfigError, match=rf"in use by another run \(pid {os.getpid()}\)"):
        build_experiment(cfg, tmp_path)
    first.run()  # the end of a run frees its folder
    build_experiment(cfg, tmp_path).close()
    # a holder killed with SIGKILL leaves the lock file, but not the lock
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(ConfigError, match=rf"pid {holder.pid}\)"):
        build_experiment(cfg, tmp_path)
    holder.kill()
    holder.wait(timeout=10)
    assert build_experiment(cfg, tmp_path).run()["env_steps"] >= 200


HOLD_LOCK = """
import sys, time
from pathlib import Path
from soulsai_ray.run_lock import RunFolderLock
lock = RunFolderLock(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(
    ("change", "keys"),
    [
        ({"hidden_sizes": [16]}, "algo.hidden_sizes"),
        ({"hidden_sizes": [16], "dueling": False}, "algo.hidden_sizes,algo.dueling"),
    ],
)
def test_resume_with_other_network_shapes_exits_naming_the_keys_and_keeps_config(
    tmp_path, change, keys
):
    from dataclasses import replace

    from soulsai_ray.typed_config import ConfigError

    algo = DQNConfig(hidden_sizes=[8], learning_starts=50)
    build_experiment(run_config(algo, steps=200, serial=True), tmp_path).run()
    saved = (tmp_path / "config.yaml").read_text()
    other = run_config(replace(algo, **change), steps=400, serial=True)
    with pytest.raises(ConfigError, match=rf"^{keys}: cannot resume from .*hidden_sizes=\[8\] in"):
        build_experiment(replace(other, resume="auto"), tmp_path)
    assert (tmp_path / "config.yaml").read_text() == saved
    build_experiment(replace(other, resume=None), tmp_path).close()  # the folder is free again


def test_resume_from_another_env_is_refused(tmp_path):
    from dataclasses import replace

    from soulsai_ray.typed_config import ConfigError

    algo = DQNConfig(hidden_sizes=[8], learning_starts=50)
    build_experiment(run_config(algo, steps=200, serial=True), tmp_path).run()
    lunar = run_config(algo, "LunarLander-v3", steps=400, serial=True)
    with pytest.raises(ConfigError, match="^env.id: .*'CartPole-v1' in the checkpoint"):
        build_experiment(replace(lunar, resume="auto"), tmp_path)


def test_a_replay_larger_than_the_memory_available_is_refused_naming_both_numbers(tmp_path):
    from dataclasses import replace

    from soulsai_ray.preflight import check_replay_memory
    from soulsai_ray.replay_factory import replay_bytes
    from soulsai_ray.typed_config import ConfigError

    algo = DQNConfig(hidden_sizes=[8], buffer_size=400_000_000, learning_starts=50)
    cfg = run_config(algo, "LunarLander-v3", steps=200, serial=True)
    need = replay_bytes(algo, 8, 4)
    assert need == 400_000_000 * (2 * 8 * 4 + 8 + 4 + 4 + 4 + 8)  # obs, next obs, the rest
    with pytest.raises(ConfigError, match=r"^algo.buffer_size: 400,000,000 transitions .*GiB"):
        build_experiment(cfg, tmp_path / "run")  # 34 GiB: more than this machine has
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"this machine has 0\.5 GiB available; at most about "):
        check_replay_memory(cfg, available=2**29)
    fits = replace(cfg, algo=replace(algo, buffer_size=2**29 // (need // 400_000_000)))
    check_replay_memory(fits, available=2**29)


def test_a_report_of_an_impossible_return_never_reaches_the_mean_or_a_stop(tmp_path):
    algo = DQNConfig(hidden_sizes=[8], learning_starts=50)
    cfg = run_config(algo, steps=200, serial=True, return_mean=400.0)
    with build_experiment(cfg, tmp_path) as experiment:
        loop = experiment.loop
        loop.accept_report(0, "node-a", 10, [1e300, 12.0], [10, 12])
        assert loop.recorder.telemetry.return_mean == 12.0
        assert loop.counters.batches_rejected == {"episode": 1}
        assert loop.rejections.by_node.as_dict() == {"node-a": 1}
