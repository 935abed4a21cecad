"""Factories for examples/pwm_flow.py: config in, TorchRL objects out (sota style)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from run_support import task_label  # a sibling script (examples/ is on sys.path)
from tensordict import TensorDict
from tensordict.nn import TensorDictSequential
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer
from torchrl.envs import Compose, RewardSum, StepCounter, TransformedEnv
from torchrl.record.loggers import get_logger

from torchrl_flowmbpo.data import DatasetError, DatasetRecorder
from torchrl_flowmbpo.diagnostics import (
    METRIC_PREFIXES,
    action_gradient_accuracy,
    make_exact_real_gradient,
    make_real_return,
    scalar_metrics,
)
from torchrl_flowmbpo.envs import make_env
from torchrl_flowmbpo.envs.controllers import REFERENCE_CONTROLLERS
from torchrl_flowmbpo.envs.locomotion import task_kwargs
from torchrl_flowmbpo.modules import encoder_operator
from torchrl_flowmbpo.objectives import PWMActorLoss, PWMValueLoss, WorldModelLoss
from torchrl_flowmbpo.recipes import (
    CheckpointError,
    TerminationBalance,
    build_actor,
    build_critic,
    build_world_model,
    load_checkpoint,
)
from torchrl_flowmbpo.transforms import RewardNormalization

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


def make_policy(world_model, actor) -> TensorDictSequential:
    """Closed-loop policy on real observations: z_t = E(o_t), then the actor."""
    return TensorDictSequential(encoder_operator(world_model), actor)


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
        flow_source=algo.flow_source,
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
        detach_continue=algo.detach_continue,
        bootstrap_extra_gamma=algo.bootstrap_extra_gamma,
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


def make_replay_buffer(cfg: DictConfig, transform: RewardNormalization, device: str):
    """Slices of H consecutive transitions that never cross an episode boundary.

    A row holds ``(o_t, a_t, next: (o_{t+1}, r_t, terminated_t))``, so H rows are the H + 1
    observations of algorithm.md. An episode's terminal transition is its last row: a slice of
    H + 1 rows would only ever hold it in the row the losses drop, and the termination head
    would never see a fall.

    No batch size is set: every caller asks for its own (:func:`sample_slices`; the world model's
    and the actor's batches differ, and a constructor size that differs from a ``sample`` size
    makes TorchRL warn).
    """
    slice_len = cfg.algo.horizon
    return TensorDictReplayBuffer(
        storage=LazyTensorStorage(cfg.replay_buffer.size, ndim=2, device=device),
        sampler=SliceSampler(
            slice_len=slice_len, traj_key=("collector", "traj_ids"), strict_length=True
        ),
        transform=transform,
    )


def sample_slices(replay_buffer, count: int, horizon: int) -> TensorDict:
    """``count`` replay slices of ``horizon`` rows, shaped ``[count, horizon]``."""
    return replay_buffer.sample(batch_size=count * horizon).reshape(count, horizon)


def start_observations(slices: TensorDict) -> TensorDict:
    """The first observations of replay slices: states from which an episode goes on for at
    least a slice's length (never terminal), the actor's start states."""
    return slices[:, 0].select("observation")


def sample_start_observations(replay_buffer, count: int, horizon: int) -> TensorDict:
    """The start observations of ``count`` fresh replay slices of ``horizon`` rows."""
    return start_observations(sample_slices(replay_buffer, count, horizon))


def make_collector(
    env, policy, *, frames_per_batch: int, total_frames: int, init_random_frames: int
) -> Collector:
    """Steps every env ``frames_per_batch / num_envs`` times per batch with the sampling policy
    (pwm_flow: ``num_envs x H`` frames per batch)."""
    return Collector(
        env,
        policy,
        frames_per_batch=frames_per_batch,
        total_frames=total_frames,
        init_random_frames=init_random_frames,
        auto_register_policy_transforms=False,
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


def make_logger(cfg: DictConfig, run_dir: str):
    """TorchRL logger (CSV by default; wandb offline unless asked), created once per run."""
    if cfg.logger.backend == "none":
        return None
    exp_name = f"{cfg.variant}_{task_label(cfg.env.name, cfg.env.kwargs)}_seed{cfg.seed}"
    kwargs = {}
    if cfg.logger.backend == "wandb":
        kwargs["wandb_kwargs"] = {
            "mode": cfg.logger.mode,
            "project": cfg.logger.project,
            "config": OmegaConf.to_container(cfg, resolve=True),
            "dir": run_dir,
        }
    return get_logger(
        cfg.logger.backend, logger_name=f"{run_dir}/logs", experiment_name=exp_name, **kwargs
    )


def drop_logged_after(log_dir: str | os.PathLike, step: int) -> int:
    """Removes the CSV scalar rows logged after ``step`` under ``log_dir``; returns how many.

    A run stopped between two checkpoints has logged rows that its resume, which restarts
    from the last checkpoint, logs again; kept, the curves would hold both (out of step
    order). TorchRL's CSV logger writes ``<experiment>/scalars/<name>.csv`` files of
    ``step,value`` lines; each changed file is replaced atomically. A line cut short by the stop
    (no newline, or no number) goes too: the next row would be appended to it. Other files are
    left.
    """

    def logged_step(line: str) -> float:
        try:
            return float(line.split(",", 1)[0]) if line.endswith("\n") else math.inf
        except ValueError:
            return math.inf

    dropped = 0
    for path in Path(log_dir).rglob("*.csv"):
        if "scalars" not in path.parts:
            continue
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if logged_step(line) <= step]
        if len(kept) < len(lines):
            partial = path.with_name(path.name + ".partial")
            partial.write_text("".join(kept))
            os.replace(partial, path)
            dropped += len(lines) - len(kept)
    return dropped


def check_schedule(cfg: DictConfig) -> None:
    """Raises ``ValueError`` naming any schedule value out of its range."""
    algo = cfg.algo
    problems = []
    if algo.actor_updates_per_iter < 1:
        problems.append(f"algo.actor_updates_per_iter={algo.actor_updates_per_iter} must be >= 1")
    if algo.critic_warmup_steps < 0:
        problems.append(f"algo.critic_warmup_steps={algo.critic_warmup_steps} must be >= 0")
    if algo.actor_bc_steps < 0:
        problems.append(f"algo.actor_bc_steps={algo.actor_bc_steps} must be >= 0")
    if algo.actor_batch is not None and algo.actor_batch < 1:
        problems.append(f"algo.actor_batch={algo.actor_batch} must be >= 1 (null: env.num_envs)")
    if not algo.real_value_coef >= 0:
        problems.append(f"algo.real_value_coef={algo.real_value_coef} must be >= 0 (0: off)")
    weight = algo.term_pos_weight
    if weight != "balanced" and (
        not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0
    ):
        problems.append(f"algo.term_pos_weight={weight!r} must be a positive number or 'balanced'")
    controller = cfg.collector.init_controller
    allowed = sorted(REFERENCE_CONTROLLERS.get(cfg.env.name, {}))
    if controller is not None and controller not in allowed:
        problems.append(
            f"collector.init_controller={controller!r} is not a reference controller of task "
            f"{cfg.env.name!r} (allowed: {allowed or 'none'}; null: uniform random actions)"
        )
    noise = cfg.collector.init_controller_noise
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        problems.append(f"collector.init_controller_noise={noise!r} must be a number >= 0")
    tolerance = cfg.diagnostics.critic_tail_tolerance
    if not 0 <= tolerance < 1:
        problems.append(
            f"diagnostics.critic_tail_tolerance={tolerance} must be in [0, 1) (0: no critic check)"
        )
    for key, least in (("probe_steps", 0), ("probe_envs", 2)):
        value = cfg.diagnostics[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            problems.append(f"diagnostics.{key}={value!r} must be an integer >= {least}")
    if problems:
        raise ValueError("; ".join(problems) + ".")


def make_exact_gradient_check(cfg: DictConfig, world_model, reward_norm):
    """``check(batch) -> metrics``: the world model's gradient of the H-step return w.r.t.
    random action sequences U[-0.5, 0.5] against the exact one of the task's differentiable
    simulator, from the first state of each env of a collected batch; None when
    ``diagnostics.exact_gradient`` is off.

    Raises:
        ValueError: when it is on for a task without a differentiable simulator.
    """
    if not cfg.diagnostics.exact_gradient:
        return None
    if "differentiable" not in task_kwargs(cfg.env.name):
        raise ValueError(
            f"diagnostics.exact_gradient=true needs a differentiable simulator; task "
            f"{cfg.env.name!r} has none (tasks with one: cartpole)."
        )
    kwargs = {**OmegaConf.to_container(cfg.env.kwargs, resolve=True), "differentiable": True}
    env = make_env(
        cfg.env.name, num_envs=cfg.env.num_envs, device=cfg.device, seed=cfg.seed + 4000, **kwargs
    )
    exact = make_exact_real_gradient(env, gamma=cfg.algo.gamma)
    real_return = make_real_return(env, gamma=cfg.algo.gamma)
    generator = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 4000)

    def check(batch: TensorDict) -> dict[str, float]:
        observations = batch.get("observation")[:, 0]
        shape = (observations.shape[0], cfg.algo.horizon, env.action_spec.shape[-1])
        actions = torch.rand(shape, generator=generator, device=cfg.device) - 0.5
        result = action_gradient_accuracy(
            world_model,
            observations,
            actions,
            real_return,
            gamma=cfg.algo.gamma,
            reward_scale=float(reward_norm.scale),
            reward_loc=float(reward_norm.loc),
            real_gradient=exact,
        )
        return scalar_metrics(result, METRIC_PREFIXES["exact_action_gradient"])

    return check


def make_termination_balance(cfg: DictConfig, device: str) -> TerminationBalance | None:
    """The running termination-weight estimate when ``algo.term_pos_weight`` is "balanced"."""
    if cfg.algo.term_pos_weight != "balanced":
        return None
    return TerminationBalance().to(device)


def count_iterations(cfg: DictConfig) -> int:
    """Training iterations after the random frames (the LR-decay horizon)."""
    frames_per_batch = cfg.env.num_envs * cfg.algo.horizon
    learn_frames = max(cfg.collector.total_frames - cfg.collector.init_random_frames, 0)
    return math.ceil(learn_frames / frames_per_batch)


class RunClock:
    """Training wall-clock of a run in ``counters["elapsed_s"]``, continued across resumes.

    Starts when built (set-up excluded). Call :meth:`tick` before logging and before every
    checkpoint, so a resumed run starts from the time of its checkpoint, evaluations included,
    and its logged clock never steps back.

    Examples:
        >>> counters = {"elapsed_s": 12.0}
        >>> clock = RunClock(counters)
        >>> clock.tick() >= 12.0 and counters["elapsed_s"] >= 12.0
        True
    """

    def __init__(self, counters: dict[str, Any]) -> None:
        self.counters = counters
        self.before = counters["elapsed_s"]  # wall-clock of earlier sessions of a resumed run
        self.start = time.perf_counter()

    def session_s(self) -> float:
        """Seconds since this session's clock started."""
        return time.perf_counter() - self.start

    def tick(self) -> float:
        """Updates and returns the run's total training seconds."""
        self.counters["elapsed_s"] = self.before + self.session_s()
        return self.counters["elapsed_s"]
