"""Driver-side orchestration of the training loops."""

from soulsai_ray.loops.run import run_training

__all__ = ["run_training"]
