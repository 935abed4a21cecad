"""TorchRL's SAC on a task of this package, the model-free baseline for PWM: the loop of
``examples/sac_baseline.py`` (as TorchRL's sota-implementations/sac: collect -> extend the replay
buffer -> ``round(utd_ratio x frames_per_batch)`` SAC steps -> log -> evaluate -> checkpoint),
with the env, logger and evaluation of PWM's runs so that the curves compare directly."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from torchrl_flowmbpo.data import TRANSITION_KEYS, make_collector, make_transition_buffer
from torchrl_flowmbpo.trainers.evaluation import Evaluator, eval_metrics
from torchrl_flowmbpo.trainers.factories import make_recorder, make_task_env
from torchrl_flowmbpo.trainers.logs import (
    RunClock,
    episode_metrics,
    make_logger,
)
from torchrl_flowmbpo.trainers.reporting import (
    curve_title,
    plot_learning_curve,
    print_summary,
    task_references,
)
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

__all__ = ["train_sac"]


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
    updates_per_batch = max(round(sac.utd_ratio * frames_per_batch), 1)
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
        return
    counters, history = checkpointer.counters, checkpointer.history
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

    evaluate = Evaluator(
        lambda n, seed: make_task_env(env_spec, num_envs=n, device=cfg.device, seed=seed),
        cfg,
        actor,
    )

    logger = make_logger(cfg, str(run_dir))

    def log(metrics: dict[str, float]) -> None:
        if logger is not None:
            for name, value in metrics.items():
                logger.log_scalar(name, value, step=counters["frames"])

    # A restored buffer comes with the collector's frame count: the collector covers the whole
    # run. Without it the resumed run refills the buffer with its policy's frames.
    whole_run = counters["frames"] == 0 or checkpointer.restored_buffer
    buffer_frames = len(replay_buffer)
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
    guard = RunGuard(checkpointer, stop)
    checkpointer.restore_rng()  # last: the objects built before drew from the RNGs
    progress = tqdm(total=cfg.collector.total_frames, initial=counters["frames"], unit="frames")
    start_frames = counters["frames"]
    clock = RunClock(counters)
    eval_stats: dict[str, float] = {}
    for data in collector if collector is not None else ():
        frames = data.numel()
        counters["frames"] += frames
        buffer_frames += frames
        replay_buffer.extend(data.select(*TRANSITION_KEYS).reshape(-1))
        if recorder is not None:
            recorder.extend(data)
        metrics = episode_metrics(data)
        if metrics:
            history["train/return"].append([counters["frames"], metrics["train/return"]])
        if buffer_frames >= sac.init_random_frames:
            steps = [
                update(loss, optimizers, target_updater, replay_buffer.sample())
                for _ in range(updates_per_batch)
            ]
            counters["updates"] += updates_per_batch
            mean = torch.stack(steps).mean()
            metrics["loss/actor"] = float(mean["loss_actor"])
            metrics["loss/qvalue"] = float(mean["loss_qvalue"])
            metrics["loss/alpha"] = float(mean["loss_alpha"])
            metrics["sac/alpha"] = float(mean["alpha"])
            metrics["sac/entropy"] = float(mean["entropy"])
        counters["iteration"] += 1
        metrics["time/elapsed_s"] = clock.tick()
        metrics["time/fps"] = (counters["frames"] - start_frames) / clock.session_s()
        if cfg.eval.interval and counters["iteration"] % cfg.eval.interval == 0:
            eval_stats = evaluate()
            metrics.update(eval_metrics(eval_stats))
            history["eval/return"].append([counters["frames"], eval_stats["return_mean"]])
        log(metrics)
        progress.update(frames)
        if "loss/qvalue" in metrics:
            progress.set_postfix(
                q=f"{metrics['loss/qvalue']:.3f}", alpha=f"{metrics['sac/alpha']:.3f}"
            )
        clock.tick()  # the evaluation above included: a resume never steps back
        guard.after_iteration()
    progress.close()
    if collector is not None:
        checkpointer.unbind_collector()  # its state outlives it in the final checkpoint
        collector.shutdown()
    last_eval = history["eval/return"][-1][0] if history["eval/return"] else None
    if last_eval != counters["frames"] or not eval_stats:
        eval_stats = evaluate()
    # A finished run re-run in its directory re-evaluates without logging the same step twice.
    if last_eval != counters["frames"]:
        history["eval/return"].append([counters["frames"], eval_stats["return_mean"]])
        log(eval_metrics(eval_stats))
    clock.tick()
    path = guard.save(finished=True)
    curve = plot_learning_curve(
        history,
        run_dir / "learning_curve.png",
        title=curve_title(cfg.variant, task_label(cfg.env.name, cfg.env.kwargs), cfg.seed),
        references=task_references(cfg.env.name, cfg.env.kwargs),
    )
    print_summary(eval_stats, path, curve)
