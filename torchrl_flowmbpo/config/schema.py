"""Structured config schema of the Hydra configs in ``configs/``, registered in Hydra's ConfigStore.

Every YAML file of ``configs/`` names its schema in its defaults list (``- schema_pwm``, or
``- /schema/world_model@_here_: flow`` in a group option), so Hydra types every key when it
composes: ``seed=abc`` or ``algo.horizon=1.5`` is refused before any code runs. The values live
in the YAML files only: no key has a default (the world-model slot is empty for SHAC), so a key
that a YAML file forgets is an error too. Each field's
:class:`~torchrl_flowmbpo.config.rules.Rule` (``>= 1``, one of a few names) is checked by
:func:`~torchrl_flowmbpo.config.validate`.

TorchRL's ``torchrl.trainers.algorithms.configs`` describe ``_target_`` factories of TorchRL
classes (a collector, a replay buffer) with their constructor keys; these describe the keys of
our YAML tree, which are not constructor arguments of one class, so they are our own dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from torchrl_flowmbpo.config.rules import (
    Rule,
    at_least,
    checked,
    finite,
    fraction,
    number_at_least,
    one_of,
    optional,
    positive,
    positive_ints,
)
from torchrl_flowmbpo.envs.locomotion import TASKS
from torchrl_flowmbpo.flows import INTEGRATORS, LOG_DET_METHODS, TAU_SAMPLING_MODES
from torchrl_flowmbpo.modules.models import PRESETS, REWARD_HEADS
from torchrl_flowmbpo.modules.models.policy_nets import VELOCITY_INITS
from torchrl_flowmbpo.objectives import CRITIC_TARGETS
from torchrl_flowmbpo.transforms import REWARD_NORM_MODES

__all__ = [
    "CONFIG_DIR",
    "ActorConfig",
    "AlgoConfig",
    "CriticConfig",
    "EnvConfig",
    "FlowActorConfig",
    "FlowWorldModelConfig",
    "PWMAlgoConfig",
    "PWMRunConfig",
    "PretrainRunConfig",
    "SACRunConfig",
    "WorldModelConfig",
    "register_configs",
]

#: The YAML files this schema describes (a source checkout's ``configs/``).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_LR = positive()
_CLIP = positive()
_COEF = number_at_least(0)


@dataclass
class EnvConfig:
    """``env/<task>.yaml``: the task and its parallel envs."""

    name: str = checked(one_of(sorted(TASKS)))
    num_envs: int = checked(at_least(1))
    kwargs: dict[str, Any] = MISSING  # task keyword arguments; checked against the task's


@dataclass
class WorldModelConfig:
    """``world_model/mlp.yaml``: the MLP latent world model, and how a run starts it."""

    type: str = checked(one_of(["mlp"]))
    preset: str = checked(one_of(PRESETS))
    reward_head: str = checked(one_of(REWARD_HEADS))
    termination_head: bool = MISSING
    term_bias_init: float = checked(finite())
    pretrained: str | None = MISSING
    finetune: bool = MISSING


@dataclass
class FlowWorldModelConfig(WorldModelConfig):
    """``world_model/flow.yaml``: the flow world model's integrator and flow-matching keys."""

    type: str = checked(one_of(["flow"]))
    integrator: str = checked(one_of(INTEGRATORS))
    flow_steps: int = checked(at_least(1))
    tau_sampling: str = checked(one_of(TAU_SAMPLING_MODES))
    project_simnorm: bool = MISSING
    center_velocity: bool = MISSING
    time_embed_freqs: int = checked(at_least(0))
    grad_checkpoint: bool = MISSING


@dataclass
class ActorConfig:
    """``actor/gaussian.yaml``: PWM's tanh-Gaussian actor."""

    type: str = checked(one_of(["gaussian"]))
    hidden: list[int] = checked(positive_ints())
    init_log_std: float = checked(finite())
    min_log_std: float = checked(finite())
    detach_latent: bool = MISSING


@dataclass
class FlowActorConfig(ActorConfig):
    """``actor/flow.yaml``: the FlowActor's integrator and density keys."""

    type: str = checked(one_of(["flow"]))
    integrator: str = checked(one_of(INTEGRATORS))
    flow_steps: int = checked(at_least(1))
    time_embed_freqs: int = checked(at_least(0))
    log_det: str = checked(one_of(LOG_DET_METHODS))
    velocity_init: str = checked(one_of(VELOCITY_INITS))


@dataclass
class CriticConfig:
    """``critic/ensemble.yaml``: the V-critic ensemble."""

    num_members: int = checked(at_least(1))
    hidden: list[int] = checked(positive_ints())


@dataclass
class AlgoConfig:
    """``algo/shac.yaml``: the actor-critic keys PWM and SHAC share."""

    name: str = checked(one_of(["pwm", "shac"]))
    horizon: int = checked(at_least(1))
    gamma: float = checked(fraction(low_open=True))
    lmbda: float = checked(fraction())
    ret_rms: bool = MISSING
    entropy_coef: float = checked(_COEF)
    critic_target: str = checked(one_of(CRITIC_TARGETS))
    target_critic: bool = MISSING
    target_tau: float = checked(fraction(low_open=True))
    critic_iterations: int = checked(at_least(1))
    critic_minibatches: int = checked(at_least(1))
    actor_lr: float = checked(_LR)
    actor_grad_clip: float = checked(_CLIP)
    critic_lr: float = checked(_LR)
    critic_grad_clip: float = checked(_CLIP)
    final_lr: float = checked(number_at_least(0))


@dataclass
class SHACAlgoConfig(AlgoConfig):
    """``algo/shac.yaml``: SHAC's keys on top of the shared ones."""

    obs_norm: bool = MISSING


@dataclass
class PWMAlgoConfig(AlgoConfig):
    """``algo/pwm.yaml``: PWM's world-model schedule, losses and optimiser on top."""

    wm_rho: float = checked(fraction(low_open=True))
    reward_norm: str = checked(one_of(REWARD_NORM_MODES))
    reward_clip: float | None = checked(optional(positive(), "no clip"))
    wm_warmup_steps: int = checked(at_least(0))
    wm_updates_per_iter: int = checked(at_least(1))
    wm_batch_slices: int = checked(at_least(1))
    dynamics_coef: float = checked(_COEF)
    reward_coef: float = checked(_COEF)
    termination_coef: float = checked(_COEF)
    # A number or the word "balanced": typed Any because OmegaConf's unions refuse an int.
    term_pos_weight: Any = checked(
        Rule(
            "a finite number > 0 or 'balanced'",
            lambda v: v == "balanced" or (_is_number(v) and positive().test(v)),
        )
    )
    actor_updates_per_iter: int = checked(at_least(1))
    actor_batch: int | None = checked(optional(at_least(1), "env.num_envs"))
    wm_lr: float = checked(_LR)
    wm_grad_clip: float = checked(_CLIP)


@dataclass
class LoggerConfig:
    """``logger/<backend>.yaml``."""

    backend: str = checked(one_of(["csv", "wandb", "none"]))
    project: str = MISSING
    mode: str = checked(one_of(["offline", "online"]))


@dataclass
class CollectorConfig:
    """``collector``: the real-env budget and its random first frames."""

    total_frames: int = checked(at_least(1))
    init_random_frames: int = checked(at_least(0))


@dataclass
class ReplayBufferConfig:
    """``replay_buffer``: PWM's FIFO replay buffer."""

    size: int = checked(at_least(1))
    offline_data: str | None = None


@dataclass
class EvalConfig:
    """``eval``: periodic deterministic evaluation."""

    episodes: int = checked(at_least(1))
    interval: int = checked(at_least(0))
    num_envs: int = checked(at_least(1))


@dataclass
class DiagnosticsConfig:
    """``diagnostics``: optional research measurements during training."""

    interval: int = checked(at_least(0))
    critic_tail_tolerance: float = checked(fraction(high_open=True))
    probe_steps: int = checked(at_least(0))
    probe_envs: int = checked(at_least(2))
    exact_gradient: bool = MISSING


@dataclass
class ResearchConfig:
    """``research`` (``diagnostics/none.yaml``): experiments that change what a run learns."""

    init_controller: str | None = MISSING  # checked against the task's reference controllers
    init_controller_noise: float = checked(number_at_least(0))
    actor_bc_steps: int = checked(at_least(0))
    critic_warmup_steps: int = checked(at_least(0))
    real_value_coef: float = checked(_COEF)


@dataclass
class RecordConfig:
    """``dataset`` of a training run: where collected batches are recorded."""

    record: str | None = MISSING
    part: str = MISSING


@dataclass
class CheckpointConfig:
    """``checkpoint``: how often a run saves, what it keeps, when it stops."""

    interval: int = checked(at_least(1))
    every_minutes: float = checked(positive())
    keep_last: int = checked(at_least(1))
    max_buffer_mb: float = checked(number_at_least(0))
    max_skipped_iterations: int = checked(at_least(1))


@dataclass
class RunConfig:
    """Keys every entry point has."""

    variant: str = MISSING
    seed: int = checked(at_least(0))
    device: str = MISSING  # cpu, cuda or cuda:N; checked against this machine's devices
    threads: int = checked(at_least(1))
    checkpoint: CheckpointConfig = MISSING


@dataclass
class PWMRunConfig(RunConfig):
    """``config.yaml``: ``examples/pwm_flow.py`` (PWM, its flow variants and SHAC)."""

    env: EnvConfig = MISSING
    world_model: WorldModelConfig | None = None  # none for experiment=shac
    actor: ActorConfig = MISSING
    critic: CriticConfig = MISSING
    algo: AlgoConfig = MISSING
    logger: LoggerConfig = MISSING
    collector: CollectorConfig = MISSING
    replay_buffer: ReplayBufferConfig = MISSING
    eval: EvalConfig = MISSING
    diagnostics: DiagnosticsConfig = MISSING
    research: ResearchConfig = MISSING
    dataset: RecordConfig = MISSING


@dataclass
class SACCollectorConfig:
    """``collector`` of a SAC run: the real-env budget and its batches."""

    total_frames: int = checked(at_least(1))
    frames_per_batch: int = checked(at_least(1))  # and a multiple of env.num_envs


@dataclass
class SACConfig:
    """``sac``: TorchRL's SAC networks, loss and update schedule."""

    hidden_sizes: list[int] = checked(positive_ints())
    num_qvalue_nets: int = checked(at_least(1))
    lr: float = checked(_LR)
    batch_size: int = checked(at_least(1))
    utd_ratio: float = checked(positive())
    gamma: float = checked(fraction(low_open=True))
    tau: float = checked(fraction(low_open=True))
    alpha_init: float = checked(positive())
    init_random_frames: int = checked(at_least(0))
    buffer_size: int = checked(at_least(1))


@dataclass
class SACRunConfig(RunConfig):
    """``sac.yaml``: ``examples/sac_baseline.py``."""

    env: EnvConfig = MISSING
    logger: LoggerConfig = MISSING
    collector: SACCollectorConfig = MISSING
    sac: SACConfig = MISSING
    eval: EvalConfig = MISSING
    dataset: RecordConfig = MISSING


@dataclass
class PretrainDatasetConfig:
    """``dataset`` of a pretraining run: the recorded data it reads."""

    path: str | None = MISSING  # required: checked by validate
    parts: list[str] | None = MISSING
    max_frames: int | None = checked(optional(at_least(1), "every frame"))
    held_out_envs: int = checked(at_least(1))


@dataclass
class PretrainEvalConfig:
    """``eval`` of a pretraining run: held-out metrics."""

    interval: int = checked(at_least(1))
    slices: int = checked(at_least(1))
    gradient_states: int = checked(at_least(0))
    gradient_horizon: int = checked(at_least(1))
    gradient_action_range: float = checked(positive())


@dataclass
class PretrainRunConfig(RunConfig):
    """``pretrain.yaml``: ``examples/pretrain_world_model.py``."""

    world_model: WorldModelConfig = MISSING
    algo: PWMAlgoConfig = MISSING
    dataset: PretrainDatasetConfig = MISSING
    steps: int = checked(at_least(1))
    eval: PretrainEvalConfig = MISSING


#: Group option schemas: ``configs/<group>/<option>.yaml`` names ``/schema/<group>@_here_: <name>``.
GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "env": {"task": EnvConfig},
    "world_model": {"mlp": WorldModelConfig, "flow": FlowWorldModelConfig},
    "actor": {"gaussian": ActorConfig, "flow": FlowActorConfig},
    "critic": {"ensemble": CriticConfig},
    "algo": {"pwm": PWMAlgoConfig, "shac": SHACAlgoConfig},
    "logger": {"backend": LoggerConfig},
}

#: Primary config schemas: ``configs/<name>.yaml`` names ``- schema_<entry>`` first.
RUN_SCHEMAS: dict[str, type] = {
    "schema_pwm": PWMRunConfig,
    "schema_sac": SACRunConfig,
    "schema_pretrain": PretrainRunConfig,
}


def register_configs() -> None:
    """Stores every schema in Hydra's ConfigStore; call it before Hydra composes ``configs/``.

    Storing is idempotent, so entry points and tests may call it more than once.

    Examples:
        >>> from hydra import compose, initialize_config_dir
        >>> from omegaconf import OmegaConf
        >>> from torchrl_flowmbpo.config import CONFIG_DIR
        >>> register_configs()
        >>> with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        ...     cfg = compose(config_name="config", overrides=["algo.horizon=8"])
        >>> cfg.algo.horizon, OmegaConf.get_type(cfg.algo).__name__
        (8, 'PWMAlgoConfig')
    """
    store = ConfigStore.instance()
    for name, node in RUN_SCHEMAS.items():
        store.store(name=name, node=node)
    for group, options in GROUP_SCHEMAS.items():
        for name, node in options.items():
            store.store(group=f"schema/{group}", name=name, node=node)
