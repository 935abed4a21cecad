"""TorchRL's SAC on a task of this package, the model-free baseline for PWM: the loop of
``examples/sac_baseline.py`` (as TorchRL's sota-implementations/sac: collect -> extend the replay
buffer -> ``round(utd_ratio x frames_per_batch)`` SAC steps -> log -> evaluate -> checkpoint),
with the env, logger and evaluation of PWM's runs so that the curves compare directly."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.data import TensorDictReplayBuffer
from torchrl.objectives import SACLoss, SoftUpdate
from tqdm import tqdm

from torchrl_flowmbpo.data import (
    TRANSITION_KEYS,
    DatasetRecorder,
    make_collector,
    make_transition_buffer,
)
from torchrl_flowmbpo.trainers.evaluation import Evaluator, eval_metrics
from torchrl_flowmbpo.trainers.factories import make_recorder, make_task_env
from torchrl_flowmbpo.trainers.logs import RunClock, episode_metrics, make_logger
from torchrl_flowmbpo.trainers.loop import TrainingLoop
from torchrl_flowmbpo.trainers.reporting import (
    curve_title,
    plot_learning_curve,
    print_summary,
    task_references,
)
from torchrl_flowmbpo.trainers.run_checkpointer import RunCheckpointer
from torchrl_flowmbpo.trainers.run_guard import RunGuard
from torchrl_flowmbpo.trainers.run_state import report_resume, resume_run_state
from torchrl_flowmbpo.trainers.sac_factories import (
    make_actor,
    make_loss,
    make_optimizers,
    make_qvalue,
    update,
)
from torchrl_flowmbpo.trainers.stopping import StopSignals
from torchrl_flowmbpo.trainers.tasks import task_label

__all__ = ["SACTrainer", "build_sac_trainer", "train_sac"]


class SACTrainer(TrainingLoop):
    """SAC's loop over a collector: every batch extends the replay buffer; once
    ``init_random_frames`` are in, each batch is followed by ``updates_per_batch`` SAC steps;
    then it logs, evaluates every ``eval_interval`` batches and hands the iteration to its
    :class:`~torchrl_flowmbpo.trainers.run_guard.RunGuard`.

    Hook stages (:meth:`register_op`): ``batch_process(data)`` on the fresh batch before the
    buffer sees it, ``post_optim(metrics, data)`` after an iteration's SAC steps,
    ``post_eval(metrics)`` after a periodic evaluation, ``post_steps_log(metrics)`` before
    logging and ``shutdown()`` when the loop ends; a returned dict joins the metrics.

    Args:
        collector: yields the sampling policy's batches (None: the run has no frames left).
        replay_buffer: the transition buffer.
        loss: TorchRL's SAC loss (with the Q ensemble, its targets and ``log(alpha)``).
        optimizers: the actor's, the critic's and alpha's optimisers, by name.
        target_updater: the Q targets' soft update.
        evaluator: the periodic deterministic evaluation.
        checkpointer: the run's checkpoints.

    Keyword Args:
        counters: ``iteration``, ``frames``, ``updates`` and ``elapsed_s`` (a resume's).
        history: the learning curve's ``train/return`` and ``eval/return`` points.
        updates_per_batch: SAC steps per collected batch.
        init_random_frames: frames in the buffer before the first update.
        recorder: records every collected batch into a dataset (None: none).
        logger: the TorchRL logger (None: none).
        eval_interval: batches between evaluations (0: none before the final one).
        total_frames: the frames of the whole run (the progress bar's total).
    """

    def __init__(
        self,
        collector,
        replay_buffer: TensorDictReplayBuffer,
        loss: SACLoss,
        optimizers: Mapping[str, torch.optim.Optimizer],
        target_updater: SoftUpdate,
        evaluator: Evaluator,
        checkpointer: RunCheckpointer,
        *,
        counters: dict[str, Any],
        history: dict[str, list[list[float]]],
        updates_per_batch: int,
        init_random_frames: int,
        recorder: DatasetRecorder | None = None,
        logger=None,
        eval_interval: int = 0,
        total_frames: int = 0,
    ) -> None:
        super().__init__(evaluator, checkpointer, counters=counters, history=history, logger=logger)
        self.collector, self.replay_buffer = collector, replay_buffer
        self.loss, self.optimizers, self.target_updater = loss, optimizers, target_updater
        self.updates_per_batch, self.init_random_frames = updates_per_batch, init_random_frames
        self.recorder, self.eval_interval = recorder, eval_interval
        self.total_frames = total_frames

    def _optimize(self, metrics: dict[str, float]) -> None:
        steps = [
            update(self.loss, self.optimizers, self.target_updater, self.replay_buffer.sample())
            for _ in range(self.updates_per_batch)
        ]
        self.counters["updates"] += self.updates_per_batch
        mean = torch.stack(steps).mean()
        metrics["loss/actor"] = float(mean["loss_actor"])
        metrics["loss/qvalue"] = float(mean["loss_qvalue"])
        metrics["loss/alpha"] = float(mean["loss_alpha"])
        metrics["sac/alpha"] = float(mean["alpha"])
        metrics["sac/entropy"] = float(mean["entropy"])

    def _evaluate(self, metrics: dict[str, float]) -> None:
        self.eval_stats = self.evaluate()
        metrics.update(eval_metrics(self.eval_stats))
        self.history["eval/return"].append(
            [self.counters["frames"], self.eval_stats["return_mean"]]
        )
        self.call_hooks("post_eval", metrics, merge_into=metrics)

    def train(self, guard: RunGuard) -> None:
        """Runs the loop until the collector's frames are done.

        Args:
            guard: checkpoints on schedule and stops the run on a signal.

        Raises:
            RunStopped: the run stopped early (a checkpoint was written if it could be).
        """
        counters, history = self.counters, self.history
        # A resumed buffer holds the frames of the sessions before (a fresh one: none).
        buffer_frames = len(self.replay_buffer)
        self.checkpointer.restore_rng()  # last: the objects built before drew from the RNGs
        with tqdm(total=self.total_frames, initial=counters["frames"], unit="frames") as progress:
            start_frames = counters["frames"]
            self.clock = clock = RunClock(counters)
            for data in self.collector if self.collector is not None else ():
                frames = data.numel()
                counters["frames"] += frames
                buffer_frames += frames
                self.call_hooks("batch_process", data)
                self.replay_buffer.extend(data.select(*TRANSITION_KEYS).reshape(-1))
                if self.recorder is not None:
                    self.recorder.extend(data)
                metrics = episode_metrics(data)
                if metrics:
                    history["train/return"].append([counters["frames"], metrics["train/return"]])
                updated = buffer_frames >= self.init_random_frames
                if updated:
                    self._optimize(metrics)
                counters["iteration"] += 1
                metrics["time/elapsed_s"] = clock.tick()
                metrics["time/fps"] = (counters["frames"] - start_frames) / clock.session_s()
                if updated:
                    self.call_hooks("post_optim", metrics, data, merge_into=metrics)
                if self.eval_interval and counters["iteration"] % self.eval_interval == 0:
                    self._evaluate(metrics)
                self.call_hooks("post_steps_log", metrics, merge_into=metrics)
                self.log(metrics)
                progress.update(frames)
                if "loss/qvalue" in metrics:
                    progress.set_postfix(
                        q=f"{metrics['loss/qvalue']:.3f}", alpha=f"{metrics['sac/alpha']:.3f}"
                    )
                clock.tick()  # the evaluation above included: a resume never steps back
                guard.after_iteration()
        if self.collector is not None:
            self.checkpointer.unbind_collector()  # its state outlives it in the final checkpoint
            self.collector.shutdown()
        self.call_hooks("shutdown")


def build_sac_trainer(cfg: DictConfig, run_dir: Path) -> SACTrainer | None:
    """SAC's trainer for ``cfg`` (``configs/sac.yaml``), resumed from ``run_dir``'s latest
    checkpoint if there is one; prints the resume notes.

    Args:
        cfg: the run's config.
        run_dir: the run directory (``checkpoints/``, ``logs/``).

    Returns:
        The trainer, or None for a finished run (nothing to do; it says so).

    Raises:
        ValueError: for a resume with another config (types and ranges:
            :func:`~torchrl_flowmbpo.config.validate`, run before).
    """
    sac = cfg.sac
    env_spec = {
        "name": cfg.env.name,
        "kwargs": OmegaConf.to_container(cfg.env.kwargs, resolve=True),
    }
    frames_per_batch = cfg.collector.frames_per_batch
    replay_buffer = make_transition_buffer(sac.buffer_size, sac.batch_size, cfg.device)
    env = make_task_env(env_spec, num_envs=cfg.env.num_envs, device=cfg.device, seed=cfg.seed)
    obs_dim = env.observation_spec["observation"].shape[-1]
    action_spec = env.action_spec_unbatched.to(cfg.device)
    actor = make_actor(obs_dim, action_spec, hidden_sizes=sac.hidden_sizes).to(cfg.device)
    qvalue = make_qvalue(obs_dim, action_spec.shape[-1], hidden_sizes=sac.hidden_sizes)
    loss, target_updater = make_loss(
        actor,
        qvalue.to(cfg.device),
        action_spec,
        gamma=sac.gamma,
        tau=sac.tau,
        num_qvalue_nets=sac.num_qvalue_nets,
        alpha_init=sac.alpha_init,
    )
    optimizers = make_optimizers(loss, lr=sac.lr)
    # The loss holds the Q ensemble, its targets and log(alpha); the actor shares its weights.
    modules = {"actor": actor, "loss": loss}
    checkpointer, notes = resume_run_state(
        cfg,
        run_dir,
        modules,
        optimizers,
        env,
        specs={"env": env_spec, "sac": OmegaConf.to_container(sac, resolve=True)},
        counters={"updates": 0},
        replay_buffer=replay_buffer,
    )
    if report_resume(checkpointer, notes, run_dir, "frames", cfg.collector.total_frames):
        return None
    counters = checkpointer.counters
    recorder = make_recorder(
        cfg,
        env_spec,
        obs_dim,
        action_spec.shape[-1],
        frames=counters["frames"],
        capacity=cfg.collector.total_frames + frames_per_batch,
        source={"script": "sac_baseline", "policy": cfg.variant, "run_dir": str(run_dir)},
    )
    if recorder is not None:
        checkpointer.before_save = recorder.commit  # the dataset and the run resume together

    evaluator = Evaluator(
        lambda n, seed: make_task_env(env_spec, num_envs=n, device=cfg.device, seed=seed),
        cfg,
        actor,
    )
    logger = make_logger(cfg, str(run_dir))
    # A restored buffer comes with the collector's frame count: the collector covers the whole
    # run. Without it the resumed run refills the buffer with its policy's frames.
    whole_run = counters["frames"] == 0 or checkpointer.restored_buffer
    remaining = cfg.collector.total_frames - counters["frames"]
    collector = None
    if remaining > 0:  # resumed after its last batch: only the final evaluation is left
        collector = make_collector(
            env,
            actor,
            frames_per_batch=frames_per_batch,
            total_frames=cfg.collector.total_frames if whole_run else remaining,
            init_random_frames=sac.init_random_frames if whole_run else 0,
        )
        checkpointer.bind_collector(collector)
    return SACTrainer(
        collector,
        replay_buffer,
        loss,
        optimizers,
        target_updater,
        evaluator,
        checkpointer,
        counters=counters,
        history=checkpointer.history,
        updates_per_batch=max(round(sac.utd_ratio * frames_per_batch), 1),
        init_random_frames=sac.init_random_frames,
        recorder=recorder,
        logger=logger,
        eval_interval=cfg.eval.interval,
        total_frames=cfg.collector.total_frames,
    )


def train_sac(cfg: DictConfig, run_dir: Path, stop: StopSignals) -> None:
    """Trains SAC as ``cfg`` (``configs/sac.yaml``) says, resuming ``run_dir``'s latest
    checkpoint if there is one; ends with an evaluation, a checkpoint and the learning curve.

    Args:
        cfg: the run's config.
        run_dir: the run directory (held by the caller's :func:`guarded_run`).
        stop: the signals installed for the run.

    Raises:
        RunStopped: a signal or non-finite weights stopped the run (after a checkpoint).
        ValueError: for a resume with another config (types and ranges:
            :func:`~torchrl_flowmbpo.config.validate`, run before).
    """
    trainer = build_sac_trainer(cfg, run_dir)
    if trainer is None:
        return
    eval_stats, path = trainer.run(stop)
    curve = plot_learning_curve(
        trainer.history,
        run_dir / "learning_curve.png",
        title=curve_title(cfg.variant, task_label(cfg.env.name, cfg.env.kwargs), cfg.seed),
        references=task_references(cfg.env.name, cfg.env.kwargs),
    )
    print_summary(eval_stats, path, curve)
