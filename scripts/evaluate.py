#!/usr/bin/env python
"""Play a trained agent: greedy DQN or deterministic PPO, with the env's action masks.

Examples:
    python scripts/evaluate.py checkpoint=outputs/.../checkpoints/best episodes=20
    python scripts/evaluate.py checkpoint=P video=true                    # record every episode
    python scripts/evaluate.py checkpoint=P1 checkpoint_phase2=P2 env=iudex_demo   # whole fight
    python scripts/evaluate.py checkpoint=P env=iudex cluster=remote      # on the game PCs

Prints one JSON line (return_mean, return_std, length_mean, episodes and the env's episode
metrics such as win_rate) and writes it as eval.json into ``<run dir>/eval/<checkpoint name>/``.
A missing, partial or corrupt checkpoint exits with status 2 and one line naming the path.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HYDRA_FULL_ERROR", "1")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.errors import HydraException  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from soulsai_ray.compose import CONF_DIR, composition_message, omegaconf_message  # noqa: E402
from soulsai_ray.compose import exit_config_error as fail  # noqa: E402

USAGE_EXIT = 2


def eval_dir(checkpoint: str | None) -> str:
    """``<run dir>/eval/<checkpoint name>`` for a checkpoint in ``<run dir>/checkpoints``."""
    if not checkpoint:
        return "outputs/eval"
    path = Path(checkpoint).expanduser().resolve()
    if path.is_file() and path.name in ("best", "latest"):
        path = path.parent / path.read_text().strip()
    root = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return str(root / "eval" / path.name)


OmegaConf.register_new_resolver("eval_dir", eval_dir, replace=True)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    if not cfg.checkpoint:
        fail("checkpoint: missing; give the checkpoint to play with checkpoint=PATH")
    for key, value in (("episodes", cfg.episodes), ("seed", cfg.seed)):  # before any env exists
        low = 1 if key == "episodes" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            fail(f"{key}: must be an integer >= {low}, got {value!r}")
    from soulsai_ray.checkpoint_folder import CheckpointError
    from soulsai_ray.config import parse_config
    from soulsai_ray.evaluation import PlaySetup, load_trained_policy, play_checkpoints
    from soulsai_ray.typed_config import ConfigError

    try:
        trained, run_config = load_trained_policy(cfg.checkpoint)
        policies = {1: trained}
        if cfg.checkpoint_phase2:
            policies[2] = load_trained_policy(cfg.checkpoint_phase2)[0]
    except CheckpointError as err:
        print(f"checkpoint error: {err}", file=sys.stderr)
        sys.exit(USAGE_EXIT)
    try:
        env_data = _env_config(cfg, run_config)
        run = parse_config({**run_config, "env": env_data, "cluster": _plain(cfg.cluster)})
    except ConfigError as err:
        fail(str(err))
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    video_dir = str(out_dir / "videos") if cfg.video else None
    if video_dir and run.cluster.address is not None:
        fail("video: records on this machine; play with cluster=local (the default)")
    setup = PlaySetup(run.env, policies, video_dir)
    try:
        if run.cluster.address is None:
            result = play_checkpoints(setup, int(cfg.episodes), int(cfg.seed))
        else:
            from soulsai_ray.loops.play import play_on_cluster

            result = play_on_cluster(setup, run.cluster, int(cfg.episodes), int(cfg.seed))
    except ValueError as err:
        print(f"checkpoint error: {err}", file=sys.stderr)
        sys.exit(USAGE_EXIT)
    except ImportError as err:  # e.g. video=true without the `video` extra
        fail(f"{'video' if cfg.video else 'env.id'}: {err}")
    report = {
        "checkpoint": trained.source,
        "checkpoint_phase2": policies[2].source if 2 in policies else None,
        "version": trained.version,
        "env": run.env.id,
        **result.summary(),
    }
    if video_dir:
        report["videos"] = sorted(str(p) for p in Path(video_dir).glob("*.mp4"))
    line = json.dumps(report)
    print(line, flush=True)  # the result first: a full disk must not lose it
    try:
        (out_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    except OSError as err:
        print(f"cannot write {out_dir / 'eval.json'}: {err}", file=sys.stderr)
        sys.exit(1)


def _plain(node: object) -> dict:
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def _env_config(cfg: DictConfig, run_config: dict) -> dict:
    """The checkpoint's env, unless the command line picks another (``env=NAME``) or changes
    some of its keys (``env.KEY=VALUE``).

    An ``env.id`` that comes from the checkpoint (data someone else may have written) must name
    an env registered without importing anything; one given on the command line is the user's.

    Raises:
        ConfigError: naming ``env.id``.
    """
    from soulsai_ray.envs.factory import check_data_env_id
    from soulsai_ray.typed_config import ConfigError

    overrides = [o.lstrip("+~").split("=", 1)[0] for o in HydraConfig.get().overrides.task]
    if "env" in overrides:
        return _plain(cfg.env)
    env = OmegaConf.create(run_config.get("env") or {})  # holds no interpolation (read_config)
    changes = [o.lstrip("+~") for o in HydraConfig.get().overrides.task if o.startswith("env.")]
    if changes:
        env = OmegaConf.merge(env, OmegaConf.from_dotlist(changes)["env"])
    data = _plain(env)
    if "env.id" not in overrides:
        try:
            check_data_env_id(str(data.get("id")))
        except ValueError as err:
            raise ConfigError("env.id", str(err).split(": ", 1)[-1]) from err
    return data


if __name__ == "__main__":
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        fail(
            composition_message(err) if isinstance(err, HydraException) else omegaconf_message(err)
        )
