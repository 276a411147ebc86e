#!/usr/bin/env python
"""Train an agent with soulsai_ray.

Examples:
    python scripts/train.py                                  # DQN on LunarLander-v3, local Ray
    python scripts/train.py algo=dqn env=cartpole cluster.num_rollout_actors=2 stop.env_steps=50000
    python scripts/train.py --cfg job                        # print the composed config

Any config key can be overridden on the command line. An invalid configuration exits with
status 2 and one line naming the key.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Composition errors must reach this script (to be reported in one line) instead of being
# printed and turned into exit status 1 by Hydra.
os.environ.setdefault("HYDRA_FULL_ERROR", "1")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.errors import HydraException  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from soulsai_ray.compose import (  # noqa: E402
    CONF_DIR,
    CONFIG_ERROR_EXIT,
    composition_message,
    omegaconf_message,
)
from soulsai_ray.compose import exit_config_error as fail  # noqa: E402


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    from soulsai_ray.checkpoint_folder import CheckpointError
    from soulsai_ray.config import parse_config
    from soulsai_ray.run_lock import remove_if_unused
    from soulsai_ray.typed_config import ConfigError

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        train_cfg = parse_config(OmegaConf.to_container(cfg, resolve=True))
        from soulsai_ray.experiment import build_experiment  # torch, Ray: once the config is sound

        experiment = build_experiment(train_cfg, run_dir, OmegaConf.to_yaml(cfg, resolve=True))
    except (ConfigError, CheckpointError, OmegaConfBaseException) as err:
        remove_if_unused(run_dir)  # refused: no new run folder is left behind
        if isinstance(err, CheckpointError):
            print(f"resume error: {err}", file=sys.stderr)
            sys.exit(CONFIG_ERROR_EXIT)
        fail(omegaconf_message(err) if isinstance(err, OmegaConfBaseException) else str(err))
    try:
        summary = experiment.run()
    except ConfigError as err:
        fail(str(err))
    if summary.get("exit_status"):
        sys.exit(summary["exit_status"])


if __name__ == "__main__":
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        fail(composition_message(err))
