"""Factories of PWM's training script: config in, TorchRL objects out (as TorchRL's sota
``utils.py``), and the constructor specs a checkpoint stores to rebuild every network."""

from __future__ import annotations

import math
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.envs import Compose, RewardSum, StepCounter, TransformedEnv

from torchrl_flowmbpo.data import DatasetError, DatasetRecorder
from torchrl_flowmbpo.envs import make_env
from torchrl_flowmbpo.modules.builders import build_actor, build_critic, build_world_model
from torchrl_flowmbpo.objectives import (
    PWMActorLoss,
    PWMValueLoss,
    TerminationBalance,
    WorldModelLoss,
)
from torchrl_flowmbpo.trainers.checkpoint import CheckpointError, load_checkpoint
from torchrl_flowmbpo.transforms import RewardNormalization

__all__ = [
    "REWARD_NORM_KEY",
    "count_iterations",
    "load_pretrained",
    "lr_decay_steps",
    "make_losses",
    "make_models",
    "make_optimizers",
    "make_recorder",
    "make_reward_normalization",
    "make_task_env",
    "make_termination_balance",
    "make_value_loss",
    "make_world_model_loss",
    "model_specs",
    "reward_units",
    "world_model_spec",
]

#: Where the normalised reward the losses read is written (the replay buffer keeps raw rewards).
REWARD_NORM_KEY = ("next", "reward_norm")


#: ``world_model`` config keys that say where a run's world model starts and whether it trains,
#: not how it is built: left out of the constructor spec.
WORLD_MODEL_RUN_KEYS = ("pretrained", "finetune")


def world_model_spec(cfg: DictConfig) -> dict[str, Any]:
    """The world model's constructor spec: ``cfg.world_model`` without the run keys."""
    spec = OmegaConf.to_container(cfg.world_model, resolve=True)
    return {key: value for key, value in spec.items() if key not in WORLD_MODEL_RUN_KEYS}


def model_specs(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """The constructor specs stored in checkpoints: enough to rebuild every network."""
    return {
        "world_model": world_model_spec(cfg),
        "actor": OmegaConf.to_container(cfg.actor, resolve=True),
        "critic": OmegaConf.to_container(cfg.critic, resolve=True),
        "env": {
            "name": cfg.env.name,
            "kwargs": OmegaConf.to_container(cfg.env.kwargs, resolve=True),
        },
    }


def make_task_env(
    env_spec: dict[str, Any], *, num_envs: int, device: str, seed: int
) -> TransformedEnv:
    """The real task with episode return and length trackers."""
    env = make_env(
        env_spec["name"], num_envs=num_envs, device=device, seed=seed, **env_spec["kwargs"]
    )
    return TransformedEnv(env, Compose(StepCounter(), RewardSum()))


def make_recorder(
    cfg: DictConfig,
    env_spec: dict[str, Any],
    obs_dim: int,
    action_dim: int,
    *,
    frames: int,
    capacity: int,
    source: dict[str, Any],
) -> DatasetRecorder | None:
    """The recorder of ``dataset.record`` (None when null), at the run's frame count.

    Args:
        cfg: the run's config (``dataset.record``, ``dataset.part``, ``env.num_envs``, ``seed``).
        env_spec: the task's name and kwargs.
        obs_dim: observation size.
        action_dim: action size.

    Keyword Args:
        frames: the frames the run has collected (0, or a resumed run's checkpoint's).
        capacity: the most frames the run will record.
        source: what writes the data, stored in the manifest.

    Raises:
        DatasetError: if the dataset's part does not hold exactly ``frames`` frames (the run
            and its dataset commit together at each checkpoint).
    """
    if cfg.dataset.record is None:
        return None
    recorder = DatasetRecorder(
        cfg.dataset.record,
        cfg.dataset.part,
        task=env_spec["name"],
        env_kwargs=env_spec["kwargs"],
        obs_dim=obs_dim,
        action_dim=action_dim,
        num_envs=cfg.env.num_envs,
        capacity=capacity,
        source=source,
        seed=cfg.seed,
    )
    if recorder.frames != frames:
        raise DatasetError(
            f"dataset.record={cfg.dataset.record} part {cfg.dataset.part!r} holds "
            f"{recorder.frames} frames but the run is at frame {frames}: record into a new "
            "part (dataset.part=...) or a new dataset."
        )
    return recorder


def load_pretrained(
    cfg: DictConfig, specs: dict[str, Any], obs_dim: int, action_dim: int
) -> dict[str, Any] | None:
    """The checkpoint of ``world_model.pretrained`` (None when null), checked against the task.

    On success ``specs["world_model"]`` becomes the pretrained model's constructor spec, so the
    run builds (and its checkpoints record) the model that was pretrained.

    Raises:
        ValueError: for an unreadable checkpoint or one not written by
            ``examples/pretrain_world_model.py``, observation or action sizes other than the
            task's, a reward normalisation mode other than ``algo.reward_norm``, or
            ``world_model.finetune=false`` without a pretrained model.
    """
    path = cfg.world_model.pretrained
    if path is None:
        if not cfg.world_model.finetune:
            raise ValueError(
                "world_model.finetune=false freezes a pretrained model: set "
                "world_model.pretrained=PATH too (a random model would never learn)."
            )
        return None
    try:
        state = load_checkpoint(path, required=("modules", "specs", "config"))
    except CheckpointError as err:
        raise ValueError(f"world_model.pretrained={path}: {err}") from err
    dims = state["specs"].get("dims")
    if dims is None:
        raise ValueError(
            f"world_model.pretrained={path} is not a checkpoint of "
            "examples/pretrain_world_model.py (its specs have no dims)."
        )
    if (dims["observation"], dims["action"]) != (obs_dim, action_dim):
        task = state["specs"]["env"]["name"]
        raise ValueError(
            f"world_model.pretrained={path} was pretrained on task {task!r} "
            f"with observation size {dims['observation']} and action size {dims['action']}; "
            f"task {specs['env']['name']!r} has {obs_dim} and {action_dim}."
        )
    mode = state["config"]["algo"]["reward_norm"]
    if mode != cfg.algo.reward_norm:
        raise ValueError(
            f"world_model.pretrained={path} predicts rewards normalised with reward_norm={mode!r}; "
            f"set algo.reward_norm={mode} (now {cfg.algo.reward_norm!r})."
        )
    specs["world_model"] = state["specs"]["world_model"]
    return state


def make_models(specs: dict[str, Any], obs_dim: int, action_dim: int, device: str):
    """World model, actor and critic from their specs."""
    world_model = build_world_model(specs["world_model"], obs_dim, action_dim).to(device)
    actor = build_actor(specs["actor"], world_model.latent_dim, action_dim).to(device)
    critic = build_critic(specs["critic"], world_model.latent_dim).to(device)
    return world_model, actor, critic


def make_world_model_loss(cfg: DictConfig, world_model) -> WorldModelLoss:
    """The world-model loss with the config's ``algo`` options, on normalised rewards."""
    algo = cfg.algo
    wm_loss = WorldModelLoss(
        world_model,
        horizon=algo.horizon,
        wm_rho=algo.wm_rho,
        dynamics_coef=algo.dynamics_coef,
        reward_coef=algo.reward_coef,
        termination_coef=algo.termination_coef,
        # "balanced": TerminationBalance sets the weight before every world-model step.
        term_pos_weight=1.0 if algo.term_pos_weight == "balanced" else algo.term_pos_weight,
    )
    wm_loss.set_keys(reward=REWARD_NORM_KEY)
    return wm_loss


def make_value_loss(cfg: DictConfig, critic) -> PWMValueLoss:
    """The TD(lambda) value loss with the config's ``algo`` options (PWM's and SHAC's)."""
    algo = cfg.algo
    return PWMValueLoss(
        critic,
        gamma=algo.gamma,
        lmbda=algo.lmbda,
        critic_target=algo.critic_target,
        target_critic=algo.target_critic,
        # Without a target critic nothing needs swapping in: a plain call per critic step.
        functional=algo.target_critic,
    )


def make_losses(cfg: DictConfig, world_model, actor, critic):
    """World-model, actor and value losses with the config's options."""
    algo = cfg.algo
    wm_loss = make_world_model_loss(cfg, world_model)
    value_loss = make_value_loss(cfg, critic)
    actor_loss = PWMActorLoss(
        actor,
        critic,
        world_model,
        horizon=algo.horizon,
        gamma=algo.gamma,
        ret_rms=algo.ret_rms,
        value_loss=value_loss,  # bootstraps from the target critic when there is one
        entropy_coef=algo.entropy_coef,
    )
    return wm_loss, actor_loss, value_loss


def make_reward_normalization(cfg: DictConfig) -> RewardNormalization:
    """Normalises sampled rewards into ("next", "reward_norm"); the buffer stays raw."""
    return RewardNormalization(
        cfg.algo.reward_norm,
        clip=cfg.algo.reward_clip,
        in_keys=[("next", "reward")],
        out_keys=[REWARD_NORM_KEY],
    )


def make_optimizers(cfg: DictConfig, world_model, actor, critic, iterations: int):
    """Adam optimisers of the reference with linear LR decay to ``final_lr`` over the run (no
    world-model optimiser when ``world_model`` is None: SHAC)."""
    algo = cfg.algo
    optimizers = {
        "actor": torch.optim.Adam(actor.parameters(), lr=algo.actor_lr, betas=(0.7, 0.95)),
        "critic": torch.optim.Adam(critic.parameters(), lr=algo.critic_lr, betas=(0.7, 0.95)),
    }
    if world_model is not None:
        optimizers = {
            "world_model": torch.optim.Adam(world_model.parameters(), lr=algo.wm_lr),
            **optimizers,
        }
    schedulers = {}
    for name, optimizer in optimizers.items():
        ratio = algo.final_lr / optimizer.param_groups[0]["lr"]
        schedulers[name] = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda i, r=ratio: 1.0 + (r - 1.0) * min(i, iterations) / max(iterations, 1),
        )
    return optimizers, schedulers


def make_termination_balance(cfg: DictConfig, device: str) -> TerminationBalance | None:
    """The running termination-weight estimate when ``algo.term_pos_weight`` is "balanced"."""
    if cfg.algo.term_pos_weight != "balanced":
        return None
    return TerminationBalance().to(device)


def count_iterations(cfg: DictConfig, buffered_frames: int = 0) -> int:
    """The training iterations of a fresh run: one per collected batch, from the batch after
    which the replay buffer holds ``collector.init_random_frames`` frames to the last (the
    default run: 90 batches of 512 frames, the 8th fills the 4,096 random frames, 83
    iterations). ``buffered_frames``: frames already in the buffer (offline data).

    Examples:
        >>> from omegaconf import OmegaConf
        >>> cfg = OmegaConf.create({"env": {"num_envs": 32}, "algo": {"horizon": 16},
        ...     "collector": {"total_frames": 46_080, "init_random_frames": 4096}})
        >>> count_iterations(cfg), lr_decay_steps(cfg)
        (83, 82)
    """
    frames_per_batch = cfg.env.num_envs * cfg.algo.horizon
    batches = math.ceil(cfg.collector.total_frames / frames_per_batch)
    waiting = cfg.collector.init_random_frames - buffered_frames
    first = max(math.ceil(waiting / frames_per_batch), 1)  # the first batch that trains
    return max(batches - first + 1, 0)


def lr_decay_steps(cfg: DictConfig) -> int:
    """The LR-decay horizon: ``ceil((total_frames - init_random_frames) / frames_per_batch)``
    scheduler steps to ``final_lr``. With ``init_random_frames`` a whole number of batches (the
    default) this is :func:`count_iterations` minus one, so the last iteration runs at
    ``final_lr``; otherwise it equals the iterations. Kept as the committed runs used it."""
    frames_per_batch = cfg.env.num_envs * cfg.algo.horizon
    learn_frames = max(cfg.collector.total_frames - cfg.collector.init_random_frames, 0)
    return math.ceil(learn_frames / frames_per_batch)


def reward_units(state: dict[str, Any]) -> tuple[float, float]:
    """``(scale, loc)`` of a checkpoint's reward normaliser: raw = model reward · scale + loc."""
    norm = make_reward_normalization(OmegaConf.create(state["config"]))
    norm.load_state_dict(state["modules"]["reward_norm"])
    return float(norm.scale), float(norm.loc)
