"""PWM's trainer built from a run's config: the task, the networks (or a pretrained world
model), the losses, the optimisers, the replay buffer, the collector, the evaluation, the logger,
the checkpoints (resuming the latest) and the research hooks the config switches on."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from torchrl_flowmbpo.data import add_offline_data, make_collector, make_slice_replay_buffer
from torchrl_flowmbpo.diagnostics.hooks import Instrumentation
from torchrl_flowmbpo.trainers.evaluation import Evaluator, make_policy
from torchrl_flowmbpo.trainers.factories import (
    load_pretrained,
    lr_decay_steps,
    make_losses,
    make_models,
    make_optimizers,
    make_recorder,
    make_reward_normalization,
    make_task_env,
    make_termination_balance,
    model_specs,
)
from torchrl_flowmbpo.trainers.logs import make_logger
from torchrl_flowmbpo.trainers.pwm import PWMTrainer
from torchrl_flowmbpo.trainers.run_state import resume_run_state
from torchrl_flowmbpo.trainers.updater import PWMUpdater

__all__ = ["build_pwm_trainer"]


def build_pwm_trainer(cfg: DictConfig, run_dir: Path) -> tuple[PWMTrainer, list[str]]:
    """PWM's trainer for ``cfg``, resumed from ``run_dir``'s latest checkpoint if there is one.

    The objects are built in a fixed order (the torch RNG draws of the networks' initialisation
    come first), so a seed gives the same run whatever is logged.

    Args:
        cfg: the run's config (``configs/config.yaml``).
        run_dir: the run directory (``checkpoints/``, ``logs/``).

    Returns:
        The trainer and notes for the run log (the checkpoint resumed from, rows dropped).

    Raises:
        ValueError: for a pretrained model that does not fit the task, or a resume with
            another config (the keys that differ are named). Types and ranges are checked
            before, by :func:`torchrl_flowmbpo.config.validate`.
    """
    specs = model_specs(cfg)
    env = make_task_env(specs["env"], num_envs=cfg.env.num_envs, device=cfg.device, seed=cfg.seed)
    obs_dim = env.observation_spec["observation"].shape[-1]
    action_dim = env.action_spec.shape[-1]
    pretrained = load_pretrained(cfg, specs, obs_dim, action_dim)
    world_model, actor, critic = make_models(specs, obs_dim, action_dim, cfg.device)
    wm_loss, actor_loss, value_loss = make_losses(cfg, world_model, actor, critic)
    reward_norm = make_reward_normalization(cfg).to(cfg.device)
    instrumentation = Instrumentation(cfg, make_task_env, specs["env"])
    instrumentation.build(world_model, reward_norm)
    finetune = cfg.world_model.finetune  # False: the pretrained model and its reward units stay
    if pretrained is not None:
        world_model.load_state_dict(pretrained["modules"]["world_model"])
        reward_norm.load_state_dict(pretrained["modules"]["reward_norm"])
        world_model.requires_grad_(finetune)
    algo = cfg.algo
    replay_buffer = make_slice_replay_buffer(
        cfg.replay_buffer.size, algo.horizon, transform=reward_norm, device=cfg.device
    )
    termination_balance = make_termination_balance(cfg, cfg.device)
    optimizers, schedulers = make_optimizers(cfg, world_model, actor, critic, lr_decay_steps(cfg))
    updater = PWMUpdater(
        wm_loss,
        actor_loss,
        value_loss,
        optimizers,
        {
            "world_model": algo.wm_grad_clip,
            "actor": algo.actor_grad_clip,
            "critic": algo.critic_grad_clip,
        },
        critic_iterations=algo.critic_iterations,
        critic_minibatches=algo.critic_minibatches,
        target_tau=algo.target_tau,
        real_value_coef=cfg.research.real_value_coef,
    )
    modules = {
        "world_model": world_model,
        "actor": actor,
        "critic": critic,
        "actor_loss": actor_loss,
        "reward_norm": reward_norm,
    }
    if value_loss.functional:  # holds the target critic's parameters
        modules["value_loss"] = value_loss
    if termination_balance is not None:
        modules["termination_balance"] = termination_balance
    checkpointer, notes = resume_run_state(
        cfg,
        run_dir,
        modules,
        optimizers,
        env,
        specs=specs,
        counters={"wm_warmed_up": False},
        schedulers=schedulers,
        replay_buffer=replay_buffer,
    )
    counters, history = checkpointer.counters, checkpointer.history
    offline = cfg.replay_buffer.offline_data
    if offline is not None and not checkpointer.restored_buffer:
        added = add_offline_data(
            replay_buffer,
            offline,
            task=cfg.env.name,
            obs_dim=obs_dim,
            action_dim=action_dim,
            num_envs=cfg.env.num_envs,
        )
        notes.append(f"replay buffer: {added:,} offline transitions of {offline}")
    recorder = make_recorder(
        cfg,
        specs["env"],
        obs_dim,
        action_dim,
        frames=counters["frames"],
        capacity=cfg.collector.total_frames + cfg.env.num_envs * algo.horizon,
        source={"script": "pwm_flow", "policy": cfg.variant, "run_dir": str(run_dir)},
    )
    if recorder is not None:
        checkpointer.before_save = recorder.commit  # the dataset and the run resume together
    policy = make_policy(world_model, actor)  # closed loop on real observations
    evaluator = Evaluator(
        lambda n, seed: make_task_env(specs["env"], num_envs=n, device=cfg.device, seed=seed),
        cfg,
        policy,
    )
    logger = make_logger(cfg, str(run_dir))
    # A restored buffer comes with the collector's frame count: the collector covers the whole
    # run. Without it the resumed run refills the buffer with its policy's frames.
    whole_run = counters["frames"] == 0 or checkpointer.restored_buffer
    init_frames = cfg.collector.init_random_frames if whole_run else 0
    sampling_policy, init_frames = instrumentation.sampling_policy(policy, init_frames)
    collector = make_collector(
        env,
        sampling_policy,
        frames_per_batch=cfg.env.num_envs * algo.horizon,
        total_frames=max(cfg.collector.total_frames - (0 if whole_run else counters["frames"]), 1),
        init_random_frames=init_frames,
    )
    checkpointer.bind_collector(collector)
    # A frozen world model's optimiser never steps, so neither does its LR schedule (PyTorch
    # warns of a scheduler stepped before its optimiser); the checkpoints keep it all the same.
    stepped = {name: s for name, s in schedulers.items() if finetune or name != "world_model"}
    trainer = PWMTrainer(
        collector,
        replay_buffer,
        updater,
        world_model,
        actor_loss,
        wm_loss,
        reward_norm,
        evaluator,
        checkpointer,
        counters=counters,
        history=history,
        schedulers=stepped,
        horizon=algo.horizon,
        actor_batch=algo.actor_batch or cfg.env.num_envs,
        wm_batch_slices=algo.wm_batch_slices,
        init_random_frames=cfg.collector.init_random_frames,
        # A pretrained model needs no warm-up on the random frames.
        wm_warmup_steps=0 if pretrained is not None else algo.wm_warmup_steps,
        actor_updates_per_iter=algo.actor_updates_per_iter,
        wm_updates_per_iter=algo.wm_updates_per_iter,
        finetune=finetune,
        termination_balance=termination_balance,
        recorder=recorder,
        logger=logger,
        eval_interval=cfg.eval.interval,
        total_frames=cfg.collector.total_frames,
    )
    instrumentation.register(
        trainer, actor=actor, critic=critic, policy=policy, optimizers=optimizers
    )
    return trainer, notes
