"""Loop pieces shared by the example scripts: model builders, checkpoints and evaluation."""

from torchrl_flowmbpo.recipes.builders import (
    ACTOR_TYPES,
    WORLD_MODEL_TYPES,
    build_actor,
    build_critic,
    build_world_model,
)
from torchrl_flowmbpo.recipes.checkpoint import (
    CheckpointError,
    find_latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from torchrl_flowmbpo.recipes.evaluation import evaluate_policy, find_forward_velocity_index
from torchrl_flowmbpo.recipes.termination_balance import TerminationBalance
from torchrl_flowmbpo.recipes.update import PWMUpdater

__all__ = [
    "ACTOR_TYPES",
    "WORLD_MODEL_TYPES",
    "CheckpointError",
    "PWMUpdater",
    "TerminationBalance",
    "build_actor",
    "build_critic",
    "build_world_model",
    "evaluate_policy",
    "find_forward_velocity_index",
    "find_latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]
