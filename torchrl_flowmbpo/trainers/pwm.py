"""PWM's training loop: collect -> extend the replay buffer -> actor, critic and world-model steps
-> log -> evaluate -> checkpoint, with TorchRL-style hooks for optional instrumentation."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import TensorDictReplayBuffer
from tqdm import tqdm

from torchrl_flowmbpo.data import (
    POLICY_OUTPUTS,
    DatasetRecorder,
    sample_slices,
    start_observations,
)
from torchrl_flowmbpo.objectives import PWMActorLoss, TerminationBalance, WorldModelLoss
from torchrl_flowmbpo.trainers.evaluation import Evaluator, eval_metrics, format_return
from torchrl_flowmbpo.trainers.logs import RunClock, episode_metrics, log_to_file
from torchrl_flowmbpo.trainers.loop import TrainingLoop
from torchrl_flowmbpo.trainers.run_checkpointer import RunCheckpointer
from torchrl_flowmbpo.trainers.run_guard import RunGuard
from torchrl_flowmbpo.trainers.updater import PWMUpdater
from torchrl_flowmbpo.transforms import RewardNormalization

__all__ = ["PWMTrainer"]


class PWMTrainer(TrainingLoop):
    """PWM's loop over a collector: every batch extends the slice replay buffer; once the random
    frames are in, each iteration takes ``actor_updates_per_iter`` actor steps (each followed by
    the critic's steps on its imagined rollout) and ``wm_updates_per_iter`` world-model steps,
    then logs, evaluates every ``eval_interval`` iterations and hands the iteration to its
    :class:`~torchrl_flowmbpo.trainers.run_guard.RunGuard` (checkpoints on schedule, stops on a
    signal or on updates skipped in too many iterations in a row).

    Hook stages (:meth:`register_op`): ``batch_process(data)`` on the fresh batch before the
    buffer sees it (the model has not trained on it), ``warm_up()`` once after the world model's
    warm-up, ``post_optim(metrics, data)``, ``post_eval(metrics)`` after a periodic evaluation
    and ``post_steps_log(metrics)`` before logging; a returned dict joins the metrics.

    Args:
        collector: yields ``[num_envs, H]`` batches of the sampling policy.
        replay_buffer: the slice buffer (:func:`~torchrl_flowmbpo.data.make_slice_replay_buffer`).
        updater: PWM's optimisation steps.
        world_model: the world model (``wm_loss``'s).
        actor_loss: the actor loss.
        wm_loss: the world-model loss.
        reward_norm: the reward normaliser the losses read (updated with every batch while the
            world model trains).
        evaluator: the periodic deterministic evaluation.
        checkpointer: the run's checkpoints.

    Keyword Args:
        counters: ``iteration``, ``frames``, ``wm_warmed_up`` and ``elapsed_s`` (a resume's).
        history: the learning curve's ``train/return`` and ``eval/return`` points.
        schedulers: LR schedulers stepped once per iteration.
        horizon: H, the slice length.
        actor_batch: start states per actor step.
        wm_batch_slices: slices per world-model step.
        init_random_frames: frames collected before the first update.
        wm_warmup_steps: world-model steps on the random frames before the first actor step.
        actor_updates_per_iter: actor steps per iteration.
        wm_updates_per_iter: world-model steps per iteration.
        finetune: whether the world model trains (False: a frozen pretrained model, whose
            losses are still logged).
        termination_balance: the running termination weight (None: a fixed weight).
        recorder: a dataset recorder of every collected batch (None: none).
        logger: a TorchRL logger (None: none).
        eval_interval: iterations between evaluations (0: none during training).
        total_frames: the run's frames (the progress bar's total).
    """

    def __init__(
        self,
        collector,
        replay_buffer: TensorDictReplayBuffer,
        updater: PWMUpdater,
        world_model: torch.nn.Module,
        actor_loss: PWMActorLoss,
        wm_loss: WorldModelLoss,
        reward_norm: RewardNormalization,
        evaluator: Evaluator,
        checkpointer: RunCheckpointer,
        *,
        counters: dict[str, Any],
        history: dict[str, list[list[float]]],
        schedulers: Mapping[str, Any],
        horizon: int,
        actor_batch: int,
        wm_batch_slices: int,
        init_random_frames: int,
        wm_warmup_steps: int,
        actor_updates_per_iter: int,
        wm_updates_per_iter: int,
        finetune: bool = True,
        termination_balance: TerminationBalance | None = None,
        recorder: DatasetRecorder | None = None,
        logger=None,
        eval_interval: int = 0,
        total_frames: int = 0,
    ) -> None:
        super().__init__(evaluator, checkpointer, counters=counters, history=history, logger=logger)
        self.collector, self.replay_buffer, self.updater = collector, replay_buffer, updater
        self.world_model, self.actor_loss, self.wm_loss = world_model, actor_loss, wm_loss
        self.reward_norm, self.schedulers = reward_norm, schedulers
        self.horizon, self.actor_batch, self.wm_batch_slices = horizon, actor_batch, wm_batch_slices
        self.init_random_frames, self.wm_warmup_steps = init_random_frames, wm_warmup_steps
        self.actor_updates_per_iter = actor_updates_per_iter
        self.wm_updates_per_iter = wm_updates_per_iter
        self.finetune, self.termination_balance = finetune, termination_balance
        self.recorder, self.eval_interval = recorder, eval_interval
        self.total_frames = total_frames
        #: Frames in the replay buffer (a resumed buffer's included).
        self.buffer_frames = 0

    def sample_start_states(self) -> TensorDictBase:
        """The actor's start observations: the first rows of fresh replay slices."""
        return start_observations(sample_slices(self.replay_buffer, self.actor_batch, self.horizon))

    def actor_critic_step(self, *, update_actor: bool = True) -> dict[str, float]:
        """One actor step (``update_actor=False``: the critic's steps only) from replay slices."""
        # The real value loss (if on: the updater decides) reads the slices the actor starts from.
        slices = sample_slices(self.replay_buffer, self.actor_batch, self.horizon)
        return self.updater.actor_critic_step(
            start_observations(slices), update_actor=update_actor, real_slices=slices
        )

    def world_model_step(self) -> dict[str, float]:
        """One world-model step (a frozen model: its losses only) on fresh replay slices."""
        batch = sample_slices(self.replay_buffer, self.wm_batch_slices, self.horizon)
        if self.termination_balance is not None:
            self.termination_balance.observe_batch(batch.get(("next", "terminated")))
            self.wm_loss.term_pos_weight.fill_(self.termination_balance.weight())
        if self.finetune:
            return self.updater.world_model_step(batch)
        return self.updater.world_model_metrics(batch)

    def _observe(self, data: TensorDictBase) -> dict[str, float]:
        """Stores a collected batch; returns its finished episodes' ``train/*`` metrics."""
        self.replay_buffer.extend(data.exclude(*POLICY_OUTPUTS))
        if self.recorder is not None:
            self.recorder.extend(data)
        if self.finetune:
            self.reward_norm.update(data.get(("next", "reward")))
        if self.termination_balance is not None:
            self.termination_balance.observe_data(data.get(("next", "terminated")))
        metrics = episode_metrics(data)
        if metrics:
            self.history["train/return"].append([self.counters["frames"], metrics["train/return"]])
        return metrics

    def _warm_up(self, progress: tqdm | None = None) -> None:
        # Its own bar under the frames bar on a terminal; on the frames bar's line when stderr
        # is redirected, where a second line would write cursor-up codes into the log.
        position = None if sys.stderr.isatty() else 0
        bar = tqdm(
            range(self.wm_warmup_steps), desc="world-model warm-up", leave=False, position=position
        )
        for _ in bar:
            self.world_model_step()
        if progress is not None:
            progress.refresh()  # back on its line
        self.call_hooks("warm_up")
        self.counters["wm_warmed_up"] = True

    def _optimize(self, metrics: dict[str, float]) -> None:
        for _ in range(self.actor_updates_per_iter):
            metrics.update(self.actor_critic_step())
        for _ in range(self.wm_updates_per_iter):
            wm_metrics = self.world_model_step()
        for scheduler in self.schedulers.values():
            scheduler.step()
        self.counters["iteration"] += 1
        metrics.update({f"world_model/{k}": v for k, v in wm_metrics.items()})
        metrics["loss/world_model"] = wm_metrics["loss"]
        metrics["loss/actor"] = metrics["actor/loss_actor"]
        metrics["loss/value"] = metrics["critic/loss_value"]
        metrics["train/reward_scale"] = float(self.reward_norm.scale)
        metrics["world_model/term_pos_weight"] = float(self.wm_loss.term_pos_weight)
        metrics["train/skipped_steps"] = float(sum(self.updater.skipped_steps.values()))

    def _evaluate(self, metrics: dict[str, float]) -> None:
        self.eval_stats = self.evaluate()
        metrics.update({f"eval/{k}": v for k, v in self.eval_stats.items()})
        metrics.update(eval_metrics(self.eval_stats))
        frames = self.counters["frames"]
        self.history["eval/return"].append([frames, self.eval_stats["return_mean"]])
        log_to_file(f"Evaluation at {frames:,} frames: {format_return(self.eval_stats)}")
        self.call_hooks("post_eval", metrics, merge_into=metrics)

    def train(self, guard: RunGuard) -> None:
        """Runs the loop until the collector's frames are done.

        Args:
            guard: checkpoints on schedule and stops the run on a signal or skipped updates.

        Raises:
            RunStopped: the run stopped early (a checkpoint was written if it could be).
        """
        counters = self.counters
        if counters["frames"] >= self.total_frames:
            return  # a finished run, or one killed after its last batch: nothing to collect
        start_frames = counters["frames"]
        self.clock = clock = RunClock(counters)
        # A resumed buffer holds the frames of the sessions before (a fresh one: none).
        self.buffer_frames = len(self.replay_buffer)
        self.checkpointer.restore_rng()  # last: the objects built before drew from the RNGs
        guard.skips.observe(sum(self.updater.skipped_steps.values()))
        last_return = float("nan")
        # The bar closes on a stop too: the stop's line then starts a line of its own.
        with tqdm(total=self.total_frames, initial=start_frames, unit="frames") as progress:
            for data in self.collector:
                frames = data.numel()
                counters["frames"] += frames
                self.buffer_frames += frames
                self.call_hooks("batch_process", data)
                metrics = self._observe(data)
                progress.update(frames)
                if self.buffer_frames < self.init_random_frames:
                    continue
                if not counters["wm_warmed_up"]:
                    self._warm_up(progress)
                self._optimize(metrics)
                metrics["time/elapsed_s"] = clock.tick()
                metrics["time/fps"] = (counters["frames"] - start_frames) / clock.session_s()
                self.call_hooks("post_optim", metrics, data, merge_into=metrics)
                if self.eval_interval and counters["iteration"] % self.eval_interval == 0:
                    self._evaluate(metrics)
                self.call_hooks("post_steps_log", metrics, merge_into=metrics)
                self.log(metrics)
                last_return = metrics.get("train/return", last_return)
                progress.set_postfix(
                    ret=f"{last_return:.1f}",
                    wm=f"{metrics['loss/world_model']:.3f}",
                    actor=f"{metrics['loss/actor']:.3f}",
                    value=f"{metrics['loss/value']:.3f}",
                )
                clock.tick()  # the evaluation above included: a resume never steps back
                guard.after_iteration(skipped_total=sum(self.updater.skipped_steps.values()))
        self.checkpointer.unbind_collector()  # its state outlives it in later checkpoints
        self.collector.shutdown()
        self.call_hooks("shutdown")
