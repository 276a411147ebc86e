"""ReplayActor: :class:`~soulsai_ray.replay_store.ReplayStore` as a Ray actor.

The shell adds what only a distributed run has: restoring the buffer from a checkpoint when Ray
(re)starts the actor, and reading the newest weight version from the weight store at start.
The driver reads the sample counts from :meth:`ReplayStore.stats` and nowhere else.
"""

from __future__ import annotations

import logging

import ray
from ray.exceptions import RayError

from soulsai_ray.actors.restore import load_payload
from soulsai_ray.algo_config import DQNConfig
from soulsai_ray.inbound import Limits
from soulsai_ray.replay_store import ReplayStore

VERSION_LOOKUP_TIMEOUT_S = 10.0

logger = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class ReplayActor(ReplayStore):
    """Stores transitions pushed by rollout actors and serves sampled batches to the learner.

    Its limits are constructor arguments, so a replay restarted by Ray checks its first batch
    like any other; at start the newest version is the weight store's.
    """

    def __init__(
        self,
        cfg: DQNConfig,
        limits: Limits,
        seed: int,
        weight_store: str = "",
        checkpoint_dir: str = "",
        resume_path: str | None = None,
    ) -> None:
        payload = load_payload(checkpoint_dir, resume_path) if checkpoint_dir else None
        saved = ((payload or {}).get("replay") or {}).get("buffer")
        del payload
        super().__init__(cfg, limits, seed, saved, _published_version(weight_store))


def _published_version(weight_store: str) -> int:
    """The weight store's newest version (0 if there is none or the store cannot be reached)."""
    if not weight_store:
        return 0
    try:
        store = ray.get_actor(weight_store)
        version, _ = ray.get(store.latest.remote(), timeout=VERSION_LOOKUP_TIMEOUT_S)
    except (RayError, ValueError) as err:
        logger.warning("could not read the newest weight version (%s)", type(err).__name__)
        return 0
    return max(int(version), 0)
