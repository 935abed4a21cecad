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
resumes from the latest checkpoint, the episodes in progress included: a resumed run ends
bit-identical to the same run uninterrupted (same device).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict, TensorDictBase
from tqdm import tqdm

from torchrl_flowmbpo.modules.builders import build_actor, build_critic
from torchrl_flowmbpo.modules.models import InputNormalizer
from torchrl_flowmbpo.objectives import PWMValueLoss, SHACActorLoss
from torchrl_flowmbpo.trainers.evaluation import Evaluator, eval_metrics
from torchrl_flowmbpo.trainers.factories import make_optimizers, make_task_env, make_value_loss
from torchrl_flowmbpo.trainers.logs import RunClock, episode_metrics, make_logger
from torchrl_flowmbpo.trainers.loop import TrainingLoop
from torchrl_flowmbpo.trainers.reporting import plot_learning_curve, print_summary
from torchrl_flowmbpo.trainers.run_checkpointer import RunCheckpointer
from torchrl_flowmbpo.trainers.run_guard import RunGuard
from torchrl_flowmbpo.trainers.run_state import report_resume, resume_run_state
from torchrl_flowmbpo.trainers.stopping import StopSignals
from torchrl_flowmbpo.trainers.updater import PWMUpdater

__all__ = [
    "SHACTrainer",
    "build_shac_trainer",
    "make_shac_losses",
    "run_shac",
    "shac_iterations",
    "shac_model_specs",
    "train_shac",
]

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


def shac_iterations(cfg: DictConfig) -> int:
    """The run's SHAC iterations: ``collector.total_frames`` in windows of ``env.num_envs x
    algo.horizon`` frames (:func:`~torchrl_flowmbpo.config.validate` refuses fewer frames than
    one window, and a task without a differentiable simulator)."""
    return cfg.collector.total_frames // (cfg.env.num_envs * cfg.algo.horizon)


class SHACTrainer(TrainingLoop):
    """SHAC's loop: each iteration rolls the actor out for H steps in the differentiable
    simulator from where the previous one stopped, takes one actor step on the exact gradient
    and the critic's steps on that rollout, then logs, evaluates every ``eval_interval``
    iterations (and after the last) and hands the iteration to its
    :class:`~torchrl_flowmbpo.trainers.run_guard.RunGuard`.

    Hook stages (:meth:`register_op`): ``batch_process(trajectory)`` on the iteration's rollout
    after its steps (SHAC has no replay buffer: the rollout is the data),
    ``post_optim(metrics, trajectory)`` after the iteration's steps, ``post_eval(metrics)``
    after an evaluation, ``post_steps_log(metrics)`` before logging and ``shutdown()`` when the
    loop ends; a returned dict joins the metrics.

    The rollouts go on from one iteration to the next: the root TensorDict the next one starts
    from (:attr:`start`, which carries the simulator's state, the done flags and the
    transforms' trackers) and the env's episode step counters are saved with each checkpoint
    (:meth:`RunCheckpointer.bind_state`), so a resume continues the episodes in progress.

    Args:
        env: the differentiable training env (a task env in transforms).
        updater: the actor and critic steps.
        actor_loss: SHAC's actor loss (it holds where the next rollout starts).
        evaluator: the deterministic evaluation (on the ordinary task).
        checkpointer: the run's checkpoints.

    Keyword Args:
        counters: ``iteration``, ``frames`` and ``elapsed_s`` (a resume's).
        history: the learning curve's ``train/return`` and ``eval/return`` points.
        schedulers: LR schedulers stepped once per iteration.
        obs_norm: the networks' observation normaliser, updated once per iteration (None: none).
        iterations: the run's iterations.
        frames_per_iteration: frames of one rollout (``num_envs x horizon``).
        logger: a TorchRL logger (None: none).
        eval_interval: iterations between evaluations (0: only after the last).
    """

    def __init__(
        self,
        env,
        updater: PWMUpdater,
        actor_loss: SHACActorLoss,
        evaluator: Evaluator,
        checkpointer: RunCheckpointer,
        *,
        counters: dict[str, Any],
        history: dict[str, list[list[float]]],
        schedulers: Mapping[str, Any],
        obs_norm: InputNormalizer | None,
        iterations: int,
        frames_per_iteration: int,
        logger=None,
        eval_interval: int = 0,
    ) -> None:
        super().__init__(evaluator, checkpointer, counters=counters, history=history, logger=logger)
        self.env, self.updater, self.actor_loss = env, updater, actor_loss
        self.schedulers, self.obs_norm = schedulers, obs_norm
        self.iterations, self.eval_interval = iterations, eval_interval
        self.frames_per_iteration = frames_per_iteration
        #: Where the next rollout starts (None: from a reset, when :meth:`train` starts).
        self.start: TensorDictBase | None = None
        checkpointer.bind_state("rollout", self._rollout_state, self._load_rollout_state)

    def _rollout_state(self) -> dict[str, Any]:
        # The task env keeps each episode's truncation clock and its reset-noise generator
        # itself (the start's step_count is the StepCounter transform's, not that clock).
        return {"start": self.start.detach().clone(), "env": self.env.base_env.sim_state()}

    def _load_rollout_state(self, state: Mapping[str, Any]) -> None:
        env = self.env
        # A copy on the env's device: a checkpoint's tensors are read-only memory maps on the CPU.
        self.start = TensorDict(state["start"], batch_size=env.batch_size).to(env.device).clone()
        env.base_env.load_sim_state(TensorDict(state["env"], batch_size=[]))

    def _evaluate(self, metrics: dict[str, float]) -> None:
        self.eval_stats = self.evaluate()
        metrics.update({f"eval/{k}": v for k, v in self.eval_stats.items()})
        metrics.update(eval_metrics(self.eval_stats))
        self.history["eval/return"].append(
            [self.counters["frames"], self.eval_stats["return_mean"]]
        )
        self.call_hooks("post_eval", metrics, merge_into=metrics)

    def train(self, guard: RunGuard) -> None:
        """Runs the loop until the run's iterations are done (the final checkpoint is
        :meth:`save`'s).

        Args:
            guard: checkpoints on schedule and stops the run on a signal or skipped updates.

        Raises:
            RunStopped: the run stopped early (a checkpoint was written if it could be).
        """
        counters, history, updater = self.counters, self.history, self.updater
        self.clock = clock = RunClock(counters)
        self.checkpointer.restore_rng()  # last: the objects built before drew from the RNGs
        guard.skips.observe(sum(updater.skipped_steps.values()))
        if self.start is None:  # a new run (or a checkpoint saved without its rollout state)
            self.start = self.env.reset()
        frames_per_iteration = self.frames_per_iteration
        with tqdm(
            total=self.iterations * frames_per_iteration, initial=counters["frames"]
        ) as progress:
            for _ in range(counters["iteration"], self.iterations):
                metrics, trajectory = updater.actor_critic_step(self.start, return_trajectory=True)
                self.start = self.actor_loss.next_start
                self.call_hooks("batch_process", trajectory)
                if self.obs_norm is not None:
                    self.obs_norm.update(trajectory[STATE_KEY])
                for scheduler in self.schedulers.values():
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
                self.call_hooks("post_optim", metrics, trajectory, merge_into=metrics)
                last = counters["iteration"] == self.iterations
                if last or (self.eval_interval and counters["iteration"] % self.eval_interval == 0):
                    self._evaluate(metrics)
                self.call_hooks("post_steps_log", metrics, merge_into=metrics)
                self.log(metrics)
                progress.set_postfix(ret=f"{metrics['actor/imagined_return']:.1f}")
                clock.tick()
                if not last:  # the final checkpoint follows
                    guard.after_iteration(skipped_total=sum(updater.skipped_steps.values()))
        self.call_hooks("shutdown")


def build_shac_trainer(cfg: DictConfig, run_dir: Path) -> SHACTrainer | None:
    """SHAC's trainer for ``cfg`` (``experiment=shac``), resumed from ``run_dir``'s latest
    checkpoint if there is one; prints the resume notes.

    Args:
        cfg: the run's config.
        run_dir: the run directory (``checkpoints/``, ``logs/``).

    Returns:
        The trainer, or None for a finished run (nothing to do; it says so).

    Raises:
        ValueError: for a resume with another config (types, ranges and the task:
            :func:`~torchrl_flowmbpo.config.validate`, run before).
    """

    iterations = shac_iterations(cfg)
    specs = shac_model_specs(cfg)
    algo = cfg.algo
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
        return None

    evaluator = Evaluator(
        lambda n, seed: make_task_env(specs["env"], num_envs=n, device=cfg.device, seed=seed),
        cfg,
        actor,
    )
    return SHACTrainer(
        env,
        updater,
        actor_loss,
        evaluator,
        checkpointer,
        counters=checkpointer.counters,
        history=checkpointer.history,
        schedulers=schedulers,
        obs_norm=obs_norm,
        iterations=iterations,
        frames_per_iteration=cfg.env.num_envs * algo.horizon,
        logger=make_logger(cfg, str(run_dir)),
        eval_interval=cfg.eval.interval,
    )


def train_shac(cfg: DictConfig, run_dir: Path, stop: StopSignals) -> None:
    """The SHAC run: builds :class:`SHACTrainer`, trains it, evaluates and checkpoints.

    Args:
        cfg: the run's config.
        run_dir: the run directory (held by the caller's :func:`guarded_run`).
        stop: the signals installed for the run.

    Raises:
        RunStopped: a signal or repeated skipped updates stopped the run (after a checkpoint).
        ValueError: for a resume with another config (types, ranges and the task:
            :func:`~torchrl_flowmbpo.config.validate`, run before).
    """
    trainer = build_shac_trainer(cfg, run_dir)
    if trainer is not None:
        run_shac(trainer, cfg, run_dir, stop)


def run_shac(trainer: SHACTrainer, cfg: DictConfig, run_dir: Path, stop: StopSignals) -> None:
    """Trains a built :class:`SHACTrainer` to the end of its run, then its closing evaluation,
    final checkpoint, learning curve and summary (:func:`train_shac` after the build).

    Args:
        trainer: what :func:`build_shac_trainer` returned for ``cfg`` and ``run_dir``.
        cfg: the run's config.
        run_dir: the run directory (held by the caller's :func:`guarded_run`).
        stop: the signals installed for the run.

    Raises:
        RunStopped: a signal or repeated skipped updates stopped the run (after a checkpoint).
    """
    eval_stats, path = trainer.run(stop)  # evaluated after the last iteration: not again
    curve = plot_learning_curve(trainer.history, run_dir / "learning_curve.png", title=cfg.variant)
    print_summary(eval_stats, path, curve)
