"""Thin ``ray.remote`` shells around the plain learner, replay and sampling classes.

Import each shell from its own module. This package imports nothing itself: Ray imports it in
every process that hosts a shell, and the rollout actors, the replay actor and the weight store
then start without torch.
"""
