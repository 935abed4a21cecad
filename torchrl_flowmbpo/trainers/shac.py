"""SHAC through PWM's losses: the actor follows the exact gradient of the simulator's return.

    python examples/pwm_flow.py experiment=shac                 # cartpole balance
    python examples/pwm_flow.py experiment=shac env=cartpole    # swing-up

``examples/pwm_flow.py`` runs this loop (:func:`train_shac`) when ``algo.name`` is ``shac``.
SHAC (Xu et al., ICLR 2022) is PWM without a world model: each iteration rolls the actor out
for H steps in the task's differentiable simulator from where the previous iteration stopped
(the rollout is the data), takes one actor step on the exact gradient of the bootstrapped return
(:class:`~torchrl_flowmbpo.objectives.SHACActorLoss`), then the critic steps of PWM on that
rollout (:class:`~torchrl_flowmbpo.objectives.PWMValueLoss`, TD(λ) cut at episode ends) with
the same updater. Evaluation runs the ordinary (MuJoCo) task. A rerun in the same run directory
resumes from the latest checkpoint (the episodes restart from a reset).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from torchrl_flowmbpo.envs.locomotion import task_kwargs
from torchrl_flowmbpo.modules.builders import build_actor, build_critic
from torchrl_flowmbpo.modules.models import InputNormalizer
from torchrl_flowmbpo.objectives import PWMValueLoss, SHACActorLoss
from torchrl_flowmbpo.trainers.evaluation import Evaluator, eval_metrics
from torchrl_flowmbpo.trainers.factories import make_optimizers, make_task_env, make_value_loss
from torchrl_flowmbpo.trainers.logs import RunClock, episode_metrics, make_logger
from torchrl_flowmbpo.trainers.reporting import plot_learning_curve, print_summary
from torchrl_flowmbpo.trainers.run_guard import RunGuard
from torchrl_flowmbpo.trainers.run_state import report_resume, resume_run_state
from torchrl_flowmbpo.trainers.stopping import StopSignals
from torchrl_flowmbpo.trainers.updater import PWMUpdater

__all__ = ["check_shac_config", "make_shac_losses", "shac_model_specs", "train_shac"]

#: What the actor and the critic read: SHAC has no latent.
STATE_KEY = "observation"


def shac_model_specs(cfg: DictConfig) -> dict[str, dict]:
    """The constructor specs stored in checkpoints (no world model)."""
    reads = {"latent_key": STATE_KEY, "input_norm": cfg.algo.obs_norm}
    return {
        "actor": {**OmegaConf.to_container(cfg.actor, resolve=True), **reads},
        "critic": {**OmegaConf.to_container(cfg.critic, resolve=True), **reads},
        "env": {
            "name": cfg.env.name,
            "kwargs": OmegaConf.to_container(cfg.env.kwargs, resolve=True),
        },
    }


def make_shac_losses(cfg: DictConfig, actor, critic, env) -> tuple[SHACActorLoss, PWMValueLoss]:
    """SHAC's actor loss through ``env`` and PWM's value loss, keyed on observations."""
    algo = cfg.algo
    value_loss = make_value_loss(cfg, critic)
    value_loss.set_keys(latent=STATE_KEY)
    actor_loss = SHACActorLoss(
        actor,
        critic,
        env,
        horizon=algo.horizon,
        gamma=algo.gamma,
        ret_rms=algo.ret_rms,
        value_loss=value_loss,
        entropy_coef=algo.entropy_coef,
    )
    return actor_loss, value_loss


def check_shac_config(cfg: DictConfig) -> int:
    """The run's SHAC iterations; raises ``ValueError`` for a task without a differentiable
    simulator or fewer frames than one iteration."""
    if "differentiable" not in task_kwargs(cfg.env.name):
        raise ValueError(
            f"SHAC needs a differentiable simulator; task "
            f"{cfg.env.name!r} has none (tasks with one: cartpole)."
        )
    frames_per_iteration = cfg.env.num_envs * cfg.algo.horizon
    iterations = cfg.collector.total_frames // frames_per_iteration
    if iterations < 1:
        raise ValueError(
            f"collector.total_frames={cfg.collector.total_frames} is less "
            f"than one SHAC iteration (env.num_envs x algo.horizon = {frames_per_iteration})."
        )
    return iterations


def train_shac(cfg: DictConfig, run_dir: Path, stop: StopSignals) -> None:
    """The SHAC loop: rollout with gradients -> actor step -> critic steps -> log -> evaluate.

    Args:
        cfg: the run's config.
        run_dir: the run directory (held by the caller's :func:`guarded_run`).
        stop: the signals installed for the run.

    Raises:
        RunStopped: a signal or repeated skipped updates stopped the run (after a checkpoint).
        ValueError: for a config :func:`check_shac_config` refuses, or a resume with another
            config.
    """
    iterations = check_shac_config(cfg)
    specs = shac_model_specs(cfg)
    algo = cfg.algo
    frames_per_iteration = cfg.env.num_envs * algo.horizon
    train_spec = {**specs["env"], "kwargs": {**specs["env"]["kwargs"], "differentiable": True}}
    env = make_task_env(train_spec, num_envs=cfg.env.num_envs, device=cfg.device, seed=cfg.seed)
    obs_dim = env.observation_spec[STATE_KEY].shape[-1]
    action_dim = env.action_spec.shape[-1]
    # One normaliser for both networks; its statistics move only below, once per iteration.
    obs_norm = InputNormalizer(obs_dim) if algo.obs_norm else None
    actor = build_actor(specs["actor"], obs_dim, action_dim, input_norm=obs_norm).to(cfg.device)
    critic = build_critic(specs["critic"], obs_dim, input_norm=obs_norm).to(cfg.device)
    actor_loss, value_loss = make_shac_losses(cfg, actor, critic, env)
    optimizers, schedulers = make_optimizers(cfg, None, actor, critic, iterations)
    updater = PWMUpdater(
        None,
        actor_loss,
        value_loss,
        optimizers,
        {"actor": algo.actor_grad_clip, "critic": algo.critic_grad_clip},
        critic_iterations=algo.critic_iterations,
        critic_minibatches=algo.critic_minibatches,
        target_tau=algo.target_tau,
    )
    modules = {"actor": actor, "critic": critic, "actor_loss": actor_loss}
    if value_loss.functional:  # holds the target critic's parameters
        modules["value_loss"] = value_loss
    checkpointer, notes = resume_run_state(
        cfg, run_dir, modules, optimizers, env, specs=specs, schedulers=schedulers
    )
    if report_resume(checkpointer, notes, run_dir, "iteration", iterations):
        return
    counters, history = checkpointer.counters, checkpointer.history

    evaluate = Evaluator(
        lambda n, seed: make_task_env(specs["env"], num_envs=n, device=cfg.device, seed=seed),
        cfg,
        actor,
    )
    logger = make_logger(cfg, str(run_dir))
    clock = RunClock(counters)
    eval_stats: dict[str, float] = {}
    guard = RunGuard(checkpointer, stop)
    checkpointer.restore_rng()  # last: the objects built before drew from the RNGs
    guard.skips.observe(sum(updater.skipped_steps.values()))
    start = env.reset()  # the episodes in progress at the checkpoint are not saved
    progress = tqdm(total=iterations * frames_per_iteration, initial=counters["frames"])
    for _ in range(counters["iteration"], iterations):
        metrics, trajectory = updater.actor_critic_step(start, return_trajectory=True)
        start = actor_loss.next_start
        if obs_norm is not None:
            obs_norm.update(trajectory[STATE_KEY])
        for scheduler in schedulers.values():
            scheduler.step()
        counters["iteration"] += 1
        counters["frames"] += frames_per_iteration
        progress.update(frames_per_iteration)
        episodes = episode_metrics(trajectory)
        metrics.update(episodes)
        if episodes:
            history["train/return"].append([counters["frames"], episodes["train/return"]])
        metrics["time/elapsed_s"] = clock.tick()
        metrics["loss/actor"] = metrics["actor/loss_actor"]
        metrics["loss/value"] = metrics["critic/loss_value"]
        metrics["train/skipped_steps"] = float(sum(updater.skipped_steps.values()))
        last = counters["iteration"] == iterations
        if last or (cfg.eval.interval and counters["iteration"] % cfg.eval.interval == 0):
            eval_stats = evaluate()
            metrics.update({f"eval/{k}": v for k, v in eval_stats.items()})
            metrics.update(eval_metrics(eval_stats))
            history["eval/return"].append([counters["frames"], eval_stats["return_mean"]])
        if logger is not None:
            for name, value in metrics.items():
                logger.log_scalar(name, value, step=counters["frames"])
        progress.set_postfix(ret=f"{metrics['actor/imagined_return']:.1f}")
        clock.tick()
        if not last:  # the final checkpoint follows
            guard.after_iteration(skipped_total=sum(updater.skipped_steps.values()))
    progress.close()
    if not eval_stats:  # resumed after its last iteration: evaluated, not logged again
        eval_stats = evaluate()
    path = guard.save(finished=True)
    curve = plot_learning_curve(history, run_dir / "learning_curve.png", title=cfg.variant)
    print_summary(eval_stats, path, curve)
