"""The run configuration from the Hydra config folder ``conf/``, and one-line config errors.

The scripts import this before torch and Ray: it imports neither, and Hydra and OmegaConf only
where a function needs them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from omegaconf.errors import OmegaConfBaseException

    from soulsai_ray.config import TrainConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
"""The Hydra config folder: ``config.yaml`` and the ``algo``, ``env`` and ``cluster`` groups."""
CONFIG_ERROR_EXIT = 2
"""Exit status of a script whose configuration is invalid."""


def compose_config(algo: str, env: str, overrides: list[str]) -> TrainConfig:
    """The run configuration ``scripts/train.py algo=ALGO env=ENV *overrides`` would use.

    Raises:
        ConfigError: the composed configuration is invalid (names the key).
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from soulsai_ray.config import parse_config

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"algo={algo}", f"env={env}", *overrides])
    return parse_config(OmegaConf.to_container(cfg, resolve=True))


def composition_message(err: Exception) -> str:
    """One line for a Hydra error raised while composing: the key and what is wrong with it."""
    text = str(err)
    match = re.search(r"Could not override '([^']+)'", text)
    if match:
        key = match.group(1)
        cause = str(err.__cause__).splitlines()[0] if err.__cause__ else "not in the config"
        if "not in struct" in cause:
            return (
                f"{key}: unknown key (add it with +{key}=... only if you mean to extend the config)"
            )
        return f"{key}: {cause}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def omegaconf_message(err: OmegaConfBaseException) -> str:
    """One line for an OmegaConf error: the full key where it names one, then the first line."""
    key = getattr(err, "full_key", None)
    text = str(err).splitlines()[0]
    return f"{key}: {text}" if key else text


def exit_config_error(message: str) -> NoReturn:
    """Prints ``config error: MESSAGE`` to stderr and exits with :data:`CONFIG_ERROR_EXIT`."""
    print(f"config error: {message}", file=sys.stderr)
    sys.exit(CONFIG_ERROR_EXIT)
