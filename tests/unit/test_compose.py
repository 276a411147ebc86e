"""soulsai_ray.compose: conf/ composed as train.py composes it, and one-line config errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException

from soulsai_ray.compose import CONF_DIR, compose_config, composition_message
from soulsai_ray.typed_config import ConfigError


def test_the_algo_and_env_groups_and_overrides_apply():
    cfg = compose_config("dqn", "cartpole", ["seed=3", "algo.batch_size=32"])
    assert (cfg.algo.name, cfg.env.id, cfg.seed) == ("dqn", "CartPole-v1", 3)
    assert cfg.algo.batch_size == 32
    assert cfg.algo.replay_ratio == 32.0  # conf/algo_env/dqn_cartpole.yaml


def test_an_invalid_value_names_its_key():
    with pytest.raises(ConfigError, match="algo.batch_size"):
        compose_config("dqn", "cartpole", ["algo.batch_size=0"])


def _composition_error(*overrides: str) -> HydraException:
    with (
        initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"),
        pytest.raises(HydraException) as caught,
    ):
        compose(config_name="config", overrides=list(overrides))
    return caught.value


def test_an_unknown_key_is_one_line_naming_it():
    message = composition_message(_composition_error("algo.nope=1"))
    assert message == (
        "algo.nope: unknown key (add it with +algo.nope=... only if you mean to extend the config)"
    )


def test_an_unknown_group_option_is_one_line():
    message = composition_message(_composition_error("env=nope"))
    assert "\n" not in message and "nope" in message


def test_importing_it_loads_neither_torch_nor_ray():
    code = (
        "import sys, soulsai_ray.compose; "
        "print(sorted(m for m in ('torch', 'ray', 'hydra') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
