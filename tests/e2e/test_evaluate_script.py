"""scripts/evaluate.py end to end: playing checkpoints of short runs as a user would, bad
checkpoints of every kind, videos, whole SoulsGym-shaped fights with two checkpoints, and a
real TensorBoard server reading a run's tags."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from script_runs import run_script

FAKE_SOULS = "soulsai_ray.envs.fake_souls:soulsai_ray/FakeSouls-v0"
# The runs only make checkpoints to play: one process (cluster=serial) writes what a Ray run does.
SHORT = ["telemetry.console=false", "cluster=serial", "stop.return_mean=null"]


def _dqn_checkpoint(folder: Path, obs_dim: int, num_actions: int, env: dict) -> Path:
    """A checkpoint as a DQN run writes it, with an untrained Q-network (no training needed)
    whose weights are seeded, so the episodes it plays are the same in every run."""
    import torch
    import yaml

    from soulsai_ray.checkpoint import CheckpointManager
    from soulsai_ray.models import QNetwork

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        q_net = QNetwork(obs_dim, num_actions, [32], dueling=True)
    config = yaml.safe_dump({"algo": {"name": "dqn", "hidden_sizes": [32]}, "env": env})
    payload = {"learner": {"q_net": q_net.state_dict()}, "version": 1}
    return CheckpointManager(folder).save("ckpt_1", payload, {"updates": 1}, config)


def _train(run_dir: Path, *args: str) -> Path:
    proc = run_script("train.py", *SHORT, *args, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def _evaluate(*args: str) -> subprocess.CompletedProcess:
    return run_script("evaluate.py", *args, timeout=300)


def _report(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # one JSON line, logs go to stderr
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> Path:
    """A short DQN CartPole run (its checkpoints, TensorBoard events and summary): about 500
    updates (1 per 4 env steps, conf/algo_env/dqn_cartpole.yaml), with an evaluation every 50."""
    return _train(
        tmp_path_factory.mktemp("cartpole") / "run",
        "algo=dqn",
        "env=cartpole",
        "stop.env_steps=2500",
        "algo.learning_starts=500",
        "telemetry.log_every_s=0.5",
        "telemetry.window=10",
        "eval.every_updates=50",
        "eval.episodes=2",
    )


def test_evaluate_prints_one_json_line_and_writes_eval_json(cartpole_run: Path) -> None:
    report = _report(
        _evaluate(f"checkpoint={cartpole_run / 'checkpoints' / 'latest'}", "episodes=4")
    )
    assert report["episodes"] == 4 and report["env"] == "CartPole-v1"
    for key in ("return_mean", "return_std", "length_mean"):
        assert isinstance(report[key], float)
    assert report["return_mean"] == report["length_mean"]  # CartPole pays 1 per step
    name = Path(report["checkpoint"]).name
    written = json.loads((cartpole_run / "eval" / name / "eval.json").read_text())
    assert written == report


def test_the_same_seed_plays_the_same_episodes(cartpole_run: Path) -> None:
    checkpoint = f"checkpoint={cartpole_run / 'checkpoints' / 'latest'}"
    first = _report(_evaluate(checkpoint, "episodes=3", "seed=7"))
    again = _report(_evaluate(checkpoint, "episodes=3", "seed=7"))
    assert first["return_mean"] == again["return_mean"]


def test_the_best_checkpoint_of_a_run_with_evaluation_is_playable(cartpole_run: Path) -> None:
    summary = json.loads((cartpole_run / "summary.json").read_text())
    assert summary["best_metric"] == "eval/return_mean" and summary["counters"]["evaluations"] > 0
    report = _report(_evaluate(f"checkpoint={cartpole_run / 'checkpoints' / 'best'}", "episodes=2"))
    assert report["checkpoint"].endswith("_eval")  # the exact weights the evaluation played


def _corrupt(folder: Path) -> None:
    state = folder / "state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))


def _partial(folder: Path) -> None:
    (folder / "manifest.json").unlink()


def _truncated(folder: Path) -> None:
    state = folder / "state.pt"
    state.write_bytes(state.read_bytes()[:100])


def _no_config(folder: Path) -> None:
    (folder / "config.yaml").unlink()


@pytest.mark.parametrize("damage", [_corrupt, _partial, _truncated, _no_config])
def test_a_damaged_checkpoint_exits_2_naming_its_path(cartpole_run, tmp_path, damage) -> None:
    source = sorted(p for p in (cartpole_run / "checkpoints").iterdir() if p.is_dir())[-1]
    folder = tmp_path / "damaged"
    shutil.copytree(source, folder)
    damage(folder)
    proc = _evaluate(f"checkpoint={folder}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(folder) in proc.stderr and proc.stdout == ""
    assert "Traceback" not in proc.stderr


def test_a_missing_or_forged_checkpoint_exits_2(tmp_path, forge_checkpoint) -> None:
    missing = _evaluate(f"checkpoint={tmp_path / 'nothing'}")
    assert missing.returncode == 2 and str(tmp_path / "nothing") in missing.stderr
    marker = tmp_path / "pwned"
    forged = forge_checkpoint(tmp_path / "forged", marker)
    proc = _evaluate(f"checkpoint={forged}")
    assert proc.returncode == 2 and str(forged) in proc.stderr
    assert not marker.exists()
    no_arg = _evaluate()
    assert no_arg.returncode == 2 and "checkpoint" in no_arg.stderr


def test_a_checkpoint_of_another_env_is_refused_with_exit_2(cartpole_run: Path) -> None:
    proc = _evaluate(f"checkpoint={cartpole_run / 'checkpoints' / 'latest'}", "env=lunarlander")
    assert proc.returncode == 2 and "LunarLander-v3" in proc.stderr


def test_ppo_plays_its_most_likely_actions(tmp_path) -> None:
    run = _train(tmp_path / "ppo", "algo=ppo", "env=cartpole", "stop.env_steps=2048")
    report = _report(_evaluate(f"checkpoint={run / 'checkpoints' / 'latest'}", "episodes=3"))
    assert report["episodes"] == 3 and report["return_mean"] > 0


def test_video_records_a_playable_file_per_episode(tmp_path) -> None:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    checkpoint = _dqn_checkpoint(tmp_path / "lunar", 8, 4, {"id": "LunarLander-v3"})
    report = _report(_evaluate(f"checkpoint={checkpoint}", "episodes=2", "video=true"))
    videos = [Path(p) for p in report["videos"]]
    assert len(videos) == 2
    frames = []
    for video in videos:
        reader = imageio_ffmpeg.read_frames(str(video))
        meta = next(reader)
        assert meta["size"] == (600, 400) and meta["fps"] == 50
        frames.append(sum(1 for _ in reader))
    # one frame per step plus the first: the videos hold exactly the episodes played
    assert sum(frames) == round(report["length_mean"] * 2) + 2


def test_a_whole_fight_plays_each_phase_with_its_own_checkpoint(tmp_path) -> None:
    """Two agents of a SoulsGym-shaped fight; the evaluation reports wins and boss HP."""
    pytest.importorskip("soulsgym")
    env = {"id": FAKE_SOULS, "angle_keys": ["player_pose[3]", "boss_pose[3]"]}
    phase1 = _dqn_checkpoint(tmp_path / "p1", 109, 20, env)
    phase2 = _dqn_checkpoint(tmp_path / "p2", 109, 20, {**env, "kwargs": {"phase": 2}})
    report = _report(_evaluate(f"checkpoint={phase1}", f"checkpoint_phase2={phase2}", "episodes=3"))
    assert report["checkpoint_phase2"] is not None and report["episodes"] == 3
    assert 0.0 <= report["win_rate"] <= 1.0
    assert 0.0 <= report["boss_hp_final_mean"] <= 1.0
    assert 0.0 <= report["player_hp_final_mean"] <= 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_tensorboard_server_lists_the_run_tags(cartpole_run: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "tensorboard"),
            "--logdir",
            str(cartpole_run / "tb"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        tags: set[str] = set()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{port}/data/plugin/scalars/tags"
                with urllib.request.urlopen(url, timeout=5) as response:
                    runs = json.loads(response.read())
                tags = {tag for run in runs.values() for tag in run}
                if "eval/return_mean" in tags:
                    break
            except OSError:
                pass
            time.sleep(1.0)
        expected = {
            "episode/return",
            "episode/return_mean",
            "episode/length_mean",
            "eval/return_mean",
            "train/loss",
            "perf/env_steps_per_s",
            "dist/actors_alive",
        }
        assert expected <= tags, sorted(tags)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("arg", ["episodes=0", "episodes=-3", "episodes=2.5", "seed=-1"])
def test_bad_episodes_or_seed_exit_2_before_any_env_is_built(cartpole_run, arg) -> None:
    start = time.monotonic()
    proc = _evaluate(f"checkpoint={cartpole_run / 'checkpoints' / 'latest'}", arg)
    assert proc.returncode == 2, proc.stderr[-2000:]
    key = arg.split("=")[0]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"config error: {key}: must be")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    "env_id", ["this:CartPole-v1", "venv.__main__:CartPole-v1", "soulsai_bench.__main__:X-v0"]
)
def test_a_checkpoint_config_naming_a_module_imports_nothing(tmp_path, env_id) -> None:
    """The checkpoint's config is data: its env.id must not make this machine import a module
    (``this`` prints the Zen of Python, ``venv.__main__`` creates virtualenvs)."""
    checkpoint = _dqn_checkpoint(tmp_path / "shared", 4, 2, {"id": env_id})
    proc = run_script("evaluate.py", f"checkpoint={checkpoint}", "episodes=1", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("config error: env.id: "), proc.stderr
    assert f"env.id={env_id}" in lines[0]  # how to import it, if the user trusts it
    assert "Beautiful is better than ugly" not in proc.stdout + proc.stderr
    assert not any(p.name in ("argv", "CartPole-v1") for p in Path.cwd().iterdir())


def test_a_module_the_user_names_is_imported(tmp_path) -> None:
    """The same checkpoint plays once the user names the env id (and so its module) themselves."""
    checkpoint = _dqn_checkpoint(tmp_path / "shared", 4, 2, {"id": "gymnasium.envs:CartPole-v1"})
    assert _evaluate(f"checkpoint={checkpoint}", "episodes=1").returncode == 2
    report = _report(
        _evaluate(f"checkpoint={checkpoint}", "episodes=1", "env.id=gymnasium.envs:CartPole-v1")
    )
    assert report["episodes"] == 1


def test_an_interpolation_in_a_checkpoint_config_is_never_resolved(tmp_path, monkeypatch):
    monkeypatch.setenv("SOULSAI_TEST_SECRET", "hunter2-secret")
    env = {"id": "CartPole-v1", "kwargs": {"render_mode": "${oc.env:SOULSAI_TEST_SECRET}"}}
    checkpoint = _dqn_checkpoint(tmp_path / "shared", 4, 2, env)
    proc = run_script("evaluate.py", f"checkpoint={checkpoint}", "episodes=1", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "env.kwargs.render_mode holds an interpolation" in proc.stderr
    assert "hunter2-secret" not in proc.stdout + proc.stderr
