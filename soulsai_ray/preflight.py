"""Checks a run passes before anything starts (Ray, envs, the run folder): each bad input is one
`ConfigError` naming its key, in seconds, instead of a traceback minutes later.

`build_experiment` calls :func:`check_before_start` and, when resuming, :func:`check_resume_matches`;
a local run calls :func:`check_local_placement` before its Ray starts.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from soulsai_ray.config import TrainConfig
from soulsai_ray.typed_config import ConfigError


def check_before_start(cfg: TrainConfig) -> None:
    """The env id (local runs) or the cluster's token auth (remote runs), the device, and where
    the env's observations are known here, the network's fit to them and the replay's memory.

    Raises:
        ConfigError: naming the key.
    """
    if cfg.cluster.address is None:  # the env runs on this machine: a wrong id fails before Ray
        _check_env_id(cfg)
    else:
        from soulsai_ray.cluster import check_join

        check_join(cfg.cluster.address)
    _check_device(cfg.device)
    spec = _spec_before_ray(cfg)
    if spec is not None:
        check_network_fits(cfg, spec)
        _check_replay_memory(cfg, spec, None)


def check_network_fits(cfg: TrainConfig, spec: Any) -> None:
    """Refuses a torso or observation normalization that cannot read the env's observations
    (a CNN over vectors, Nature-CNN kernels larger than a small image, running statistics over
    pixels).

    Args:
        cfg: The run's config.
        spec: The env's `EnvSpec`.

    Raises:
        ConfigError: naming ``algo.torso`` or ``algo.normalize_obs``.
    """
    from soulsai_ray.algo_config import torso_problem

    problem = torso_problem(cfg.algo.torso, spec.obs)
    if problem is not None:
        raise ConfigError("algo.torso", f"{cfg.algo.torso}: {problem}")
    if cfg.algo.normalize_obs and spec.obs.is_image:
        raise ConfigError(
            "algo.normalize_obs",
            f"the env gives a {spec.obs.describe()}, which the network scales by 1/"
            f"{spec.obs.high:g}; running mean/std normalization is for vector observations: "
            "set algo.normalize_obs=false",
        )


RESUME_KEYS = (
    "algo.name",
    "algo.torso",
    "algo.hidden_sizes",
    "algo.dueling",
    "algo.layer_norm",
    "algo.normalize_obs",
    "algo.activation",
    "algo.replay_layout",
    "env.id",
    "env.angle_keys",
    "env.frame_stack",
)
"""Keys that fix the shapes of the networks, observations and saved replay: a resumed run keeps
them."""


def check_resume_matches(cfg: TrainConfig, saved: dict[str, Any], path: Path) -> None:
    """Refuses to resume from a checkpoint trained with other network or observation shapes.

    Args:
        cfg: This run's config.
        saved: The checkpoint's config, as data (`read_config`); keys it lacks are not compared.
        path: The checkpoint, for the message.

    Raises:
        ConfigError: naming every differing key of `RESUME_KEYS` and both values.
    """
    current = asdict(cfg)
    differ: dict[str, str] = {}
    for key in RESUME_KEYS:
        section, name = key.split(".")
        then = saved.get(section)
        if name not in current[section] or not isinstance(then, dict) or name not in then:
            continue
        if then[name] != current[section][name]:
            differ[key] = f"{key}={then[name]!r} in the checkpoint, {current[section][name]!r} now"
    if differ:
        raise ConfigError(
            ",".join(differ),
            f"cannot resume from {path}: {'; '.join(differ.values())}. Resume with the "
            "checkpoint's values, or start a new run in a folder of its own",
        )


LOCAL_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")
"""What an embedded local Ray offers: the machine's own resources, no custom ones."""


def check_local_placement(actor_resources: dict[str, float], joined: bool = False) -> None:
    """Fails fast when a local Ray cannot host a single rollout actor: before an embedded Ray
    starts (it offers only `LOCAL_RESOURCES`), or against the local Ray this process ``joined``.

    Raises:
        ConfigError: naming ``env.actor_resources`` and the two ways out.
    """
    if joined:
        from soulsai_ray.cluster import missing_local_resources

        missing = missing_local_resources(dict(actor_resources))
    else:
        missing = {k: v for k, v in actor_resources.items() if k not in LOCAL_RESOURCES}
    if missing:
        raise ConfigError(
            "env.actor_resources",
            f"rollout actors need {missing}, which the local Ray (cluster.address=null) does "
            "not offer; train on game PCs with cluster=remote, or run the env on this machine "
            "with env.actor_resources=null",
        )


def check_replay_memory(cfg: TrainConfig, available: int | None = None) -> None:
    """Refuses a DQN run whose replay buffer would not fit in the memory this machine has
    available (the replay lives on the driver's machine).

    The observation spec (a vector's size, an image's shape and dtype) comes from creating the
    env once here for a local run, and for SoulsGym ids from the project's FakeSouls (same
    spaces as soulsgym's Iudex) or FakeSoulsImg (``SoulsGymIudexImg-v0``'s frames); for other
    envs of a remote cluster it is unknown here and nothing is checked.

    Args:
        cfg: The run's config.
        available: Bytes available (default: what the machine reports now).

    Raises:
        ConfigError: naming ``algo.buffer_size``, the bytes needed and available.
    """
    from soulsai_ray.algo_config import DQNConfig

    if isinstance(cfg.algo, DQNConfig):
        _check_replay_memory(cfg, _spec_before_ray(cfg), available)


def _check_replay_memory(cfg: TrainConfig, spec: Any, available: int | None) -> None:
    from soulsai_ray.algo_config import DQNConfig
    from soulsai_ray.replay_factory import replay_bytes

    if spec is None or not isinstance(cfg.algo, DQNConfig):
        return

    need = replay_bytes(cfg.algo, spec.obs, spec.num_actions, cfg.env.frame_stack)
    if available is None:
        import psutil

        available = int(psutil.virtual_memory().available)
    if need > available:
        fits = int(cfg.algo.buffer_size * available / need)
        if cfg.algo.replay_layout == "frames":
            what = f"frames of {spec.obs.single_frame(cfg.env.frame_stack).describe()}"
        else:
            what = f"transitions of {spec.obs.describe()} observations"
        raise ConfigError(
            "algo.buffer_size",
            f"{cfg.algo.buffer_size:,} {what} need {need / 2**30:.1f} GiB of replay, but this "
            f"machine has {available / 2**30:.1f} GiB available; at most about {fits:,} fit",
        )


def _spec_before_ray(cfg: TrainConfig) -> Any:
    """The env's sizes (`EnvSpec`) where they can be known without the cluster, else None."""
    from dataclasses import replace

    from soulsai_ray.envs.factory import probe_env_spec
    from soulsai_ray.envs.soulsgym import is_souls_image_id, is_soulsgym_id

    env = replace(cfg.env, step_latency_s=0.0, reset_latency_s=0.0)
    if is_soulsgym_id(cfg.env.id):  # the project's FakeSouls has the game's spaces
        if is_souls_image_id(cfg.env.id):
            from soulsai_ray.envs.fake_souls_img import ENV_ID
        else:
            from soulsai_ray.envs.fake_souls import ENV_ID
        env = replace(env, id=ENV_ID, kwargs={})
    elif cfg.cluster.address is not None:
        return None
    try:
        return probe_env_spec(env)
    except Exception:  # noqa: BLE001 - where the env runs, its own error is reported in full
        return None


def _check_env_id(cfg: TrainConfig) -> None:
    from soulsai_ray.envs.factory import check_env_id

    try:
        check_env_id(cfg.env)
    except ValueError as err:
        raise ConfigError("env.id", str(err).removeprefix(f"env.id={cfg.env.id!r}: ")) from err


def _check_device(device: str) -> None:
    """``device=cuda`` needs a GPU that torch sees here: the learner runs on this machine."""
    if device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "device",
            "cuda was asked for, but torch sees no CUDA device on this machine (the learner "
            "runs here); use device=cpu, or device=auto to take a GPU when there is one",
        )
