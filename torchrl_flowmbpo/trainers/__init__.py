"""Training loops and what they share: PWM's trainer and its optimisation steps, SHAC's and SAC's
loops, offline world-model pretraining, config factories, checkpoints and the resume contract,
evaluation, logs and the closing report.

The example scripts are thin: ``examples/pwm_flow.py`` builds :class:`PWMTrainer` with
:func:`build_pwm_trainer`, trains it and evaluates the result; :func:`train_shac` and
:func:`train_sac` do the same with :class:`SHACTrainer` and :class:`SACTrainer`. The three loops
are hooked loops (:class:`HookedLoop`) with TorchRL's hook stages.
"""

from torchrl_flowmbpo.trainers.checkpoint import (
    CheckpointError,
    find_latest_checkpoint,
    load_checkpoint,
    resolve_checkpoint,
)
from torchrl_flowmbpo.trainers.evaluation import (
    Evaluator,
    eval_metrics,
    evaluate_policy,
    find_forward_velocity_index,
    format_return,
    load_policy,
    make_policy,
)
from torchrl_flowmbpo.trainers.hooks import HOOK_STAGES, HookedLoop
from torchrl_flowmbpo.trainers.pretrain import pretrain_world_model
from torchrl_flowmbpo.trainers.pwm import PWMTrainer
from torchrl_flowmbpo.trainers.pwm_builder import build_pwm_trainer
from torchrl_flowmbpo.trainers.resume import RESUMABLE_CHANGES, config_changes
from torchrl_flowmbpo.trainers.run_checkpointer import RunCheckpointer
from torchrl_flowmbpo.trainers.sac import SACTrainer, train_sac
from torchrl_flowmbpo.trainers.shac import SHACTrainer, train_shac
from torchrl_flowmbpo.trainers.updater import PWMUpdater

__all__ = [
    "HOOK_STAGES",
    "RESUMABLE_CHANGES",
    "CheckpointError",
    "Evaluator",
    "HookedLoop",
    "PWMTrainer",
    "PWMUpdater",
    "RunCheckpointer",
    "SACTrainer",
    "SHACTrainer",
    "build_pwm_trainer",
    "config_changes",
    "eval_metrics",
    "evaluate_policy",
    "find_forward_velocity_index",
    "find_latest_checkpoint",
    "format_return",
    "load_checkpoint",
    "load_policy",
    "make_policy",
    "pretrain_world_model",
    "resolve_checkpoint",
    "train_sac",
    "train_shac",
]
