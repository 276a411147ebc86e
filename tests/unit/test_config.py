"""Config validation: every error names its key."""

import pytest

from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.config import TrainConfig, parse_config
from soulsai_ray.typed_config import ConfigError


def _data(**overrides):
    data = {
        "algo": {"name": "dqn"},
        "env": {"id": "CartPole-v1"},
        "cluster": {"num_rollout_actors": 2},
        "stop": {"env_steps": 1000},
        "seed": 3,
    }
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return data


def test_valid_config_is_typed():
    cfg = parse_config(_data(algo__lr=1, algo__hidden_sizes=[64, 64]))
    assert isinstance(cfg, TrainConfig)
    assert isinstance(cfg.algo, DQNConfig)
    assert cfg.algo.lr == 1.0 and isinstance(cfg.algo.lr, float)
    assert cfg.algo.hidden_sizes == [64, 64]
    assert cfg.seed == 3 and cfg.env.id == "CartPole-v1"


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        ({"algo__batch_size": 0}, "algo.batch_size", "> 0"),
        ({"algo__n_step": 0}, "algo.n_step", "> 0"),
        ({"algo__batch_sise": 64}, "algo.batch_sise", "did you mean 'algo.batch_size'"),
        ({"algo__lr": "fast"}, "algo.lr", "expected a number"),
        ({"algo__dueling": "yes"}, "algo.dueling", "true/false"),
        ({"algo__gamma": 1.5}, "algo.gamma", "(0, 1]"),
        ({"algo__hidden_sizes": [64, 0]}, "algo.hidden_sizes[1]", "> 0"),
        ({"algo__learning_starts": 10**9}, "algo.learning_starts", "buffer_size"),
        ({"algo__name": "a3c"}, "algo.name", "unknown algorithm"),
        ({"cluster__num_rollout_actors": 0}, "cluster.num_rollout_actors", "> 0"),
        (
            {"cluster__num_rollout_actors": 1.5},
            "cluster.num_rollout_actors",
            "an integer or 'auto'",
        ),
        ({"cluster__num_rollout_actors": "auto"}, "cluster.num_rollout_actors", "actor_resources"),
        ({"stop__time_s": "soon"}, "stop.time_s", "a number or null"),
        ({"env__actor_resources": {"soulsgym": -1}}, "env.actor_resources.soulsgym", "> 0"),
        ({"stop__env_steps": None}, "stop", "at least one"),
        ({"stop__time_s": -1}, "stop.time_s", "> 0"),
        ({"stop__time_s": float("inf")}, "stop.time_s", "finite"),
        ({"algo__replay_ratio": float("inf")}, "algo.replay_ratio", "finite"),
        ({"algo__lr": float("nan")}, "algo.lr", "finite"),
        (
            {"env__actor_resources": {"soulsgym": float("inf")}},
            "env.actor_resources.soulsgym",
            "finite",
        ),
        ({"bogus": 1}, "bogus", "unknown key"),
        ({"device": "tpu"}, "device", "cpu, cuda or auto"),
    ],
)
def test_invalid_values_name_their_key(overrides, key, fragment):
    with pytest.raises(ConfigError) as info:
        parse_config(_data(**overrides))
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")
    assert fragment in str(info.value)


def test_hydra_section_is_ignored():
    cfg = parse_config({**_data(), "hydra": {"run": {"dir": "x"}}})
    assert cfg.stop.env_steps == 1000


@pytest.mark.parametrize("algo", ["dqn", "dqn_efficient", "ppo"])
@pytest.mark.parametrize("env", ["lunarlander", "cartpole", "iudex", "iudex_demo"])
def test_shipped_configs_parse(algo, env):
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"algo={algo}", f"env={env}"])
    parsed = parse_config(OmegaConf.to_container(cfg, resolve=True))
    assert parsed.algo.name == ("dqn" if algo == "dqn_efficient" else algo)
    assert parsed.stop.return_mean == parsed.env.return_target
    if (algo, env) == ("ppo", "lunarlander"):
        assert parsed.env.num_envs_per_actor == 8 and parsed.algo.gamma == 0.999
    if (algo, env) in (("ppo", "lunarlander"), ("dqn", "lunarlander")):
        # per algorithm x env stop: the shipped command runs until solved, not 1M steps
        assert parsed.stop.env_steps == 3_000_000
    else:
        assert parsed.stop.env_steps == 1_000_000
    if algo == "dqn" and env in ("lunarlander", "cartpole"):
        # conf/algo_env/dqn_cartpole.yaml: 1 update per 4 env steps on CartPole only
        assert parsed.algo.replay_ratio == (32.0 if env == "cartpole" else 128.0)
        assert parsed.algo.ratio_slack_steps is None  # cheap env steps: actors never wait
    elif algo.startswith("dqn"):
        # game PCs (dqn_iudex.yaml) never wait either; iudex_demo is for playing checkpoints
        assert parsed.algo.ratio_slack_steps == (None if env == "iudex" else 2000)


def test_command_line_wins_over_algo_env_settings():
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[2] / "conf"
    overrides = ["algo=ppo", "env=lunarlander", "stop.env_steps=5", "algo.epochs=2"]
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    parsed = parse_config(OmegaConf.to_container(cfg, resolve=True))
    assert parsed.stop.env_steps == 5 and parsed.algo.epochs == 2


def test_env_base_holds_the_env_config_defaults():
    """conf/env/_base.yaml is where env YAMLs start from; it must not drift from EnvConfig."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from soulsai_ray.config import EnvConfig
    from soulsai_ray.typed_config import build_dataclass

    base = Path(__file__).resolve().parents[2] / "conf" / "env" / "_base.yaml"
    data = OmegaConf.to_container(OmegaConf.load(base))
    assert build_dataclass(EnvConfig, data, "env") == EnvConfig()


@pytest.mark.parametrize("env", ["lunarlander", "cartpole", "iudex", "iudex_demo"])
def test_every_env_key_can_be_overridden_without_a_plus(env):
    import dataclasses
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from soulsai_ray.config import EnvConfig

    conf = Path(__file__).resolve().parents[2] / "conf"
    overrides = [f"env={env}", "env.step_latency_s=0.5", "env.max_abs_reward=7.0"]
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    assert list(cfg.env) == [f.name for f in dataclasses.fields(EnvConfig)]
    assert (cfg.env.step_latency_s, cfg.env.max_abs_reward) == (0.5, 7.0)
