"""Environments: the imagined latent env and the Newton locomotion tasks.

The locomotion tasks import Newton/Warp lazily, when a task is built.
"""

from torchrl_flowmbpo.envs.imagined import ImaginedLatentEnv
from torchrl_flowmbpo.envs.locomotion import TASKS, make_env
from torchrl_flowmbpo.envs.rollout import differentiable_rollout

__all__ = ["TASKS", "ImaginedLatentEnv", "differentiable_rollout", "make_env"]
