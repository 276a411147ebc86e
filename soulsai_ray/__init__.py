"""soulsai_ray: Ray-based actor/learner reinforcement learning for slow real-time games."""

__version__ = "0.1.0"
