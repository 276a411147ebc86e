"""The training loops: on Ray (`dqn_async`, `ppo_sync`) and in one process (`serial`).

Build and run one with :func:`soulsai_ray.experiment.build_experiment`.
"""
