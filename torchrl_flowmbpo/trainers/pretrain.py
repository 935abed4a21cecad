"""Offline pretraining of a world model on a recorded dataset, logging held-out accuracy (PWM's
protocol): the loop of ``examples/pretrain_world_model.py``.

The dataset's episodes are split by env column (``dataset.held_out_envs`` held out); the
training split fills the ``SliceSampler`` replay buffer of the online pipeline, so the loss
(``WorldModelLoss`` with the ``algo`` options of ``configs/algo/pwm.yaml``) sees the same
``[B, H]`` slices as online. Rewards are normalised as online: the normaliser's statistics are
updated once with every training reward (each frame counted once) and saved with the model.
Every ``eval.interval`` steps the held-out metrics
(:func:`~torchrl_flowmbpo.diagnostics.held_out.held_out_metrics`) are appended to
``<run dir>/metrics.csv``; checkpoints hold the model, the normaliser, the optimiser and the RNG.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from torchrl_flowmbpo.data import held_out_split, load_dataset, make_slice_buffer
from torchrl_flowmbpo.diagnostics.held_out import held_out_metrics, make_gradient_check
from torchrl_flowmbpo.envs import make_env
from torchrl_flowmbpo.modules.builders import build_world_model
from torchrl_flowmbpo.trainers.factories import (
    make_reward_normalization,
    make_termination_balance,
    make_world_model_loss,
    world_model_spec,
)
from torchrl_flowmbpo.trainers.logs import MetricsCSV, RunClock
from torchrl_flowmbpo.trainers.resume import RESUMABLE_CHANGES
from torchrl_flowmbpo.trainers.run_checkpointer import RunCheckpointer
from torchrl_flowmbpo.trainers.run_guard import RunGuard
from torchrl_flowmbpo.trainers.stopping import StopSignals

__all__ = ["PRETRAIN_RESUMABLE", "pretrain_world_model"]

#: Keys a resumed pretraining may change: a longer run, and how often it reports.
PRETRAIN_RESUMABLE = (*RESUMABLE_CHANGES, "steps", "eval.interval")


def pretrain_world_model(cfg: DictConfig, run_dir: Path, stop: StopSignals) -> None:
    """Pretrains as ``cfg`` (``configs/pretrain.yaml``) says, resuming ``run_dir``'s latest
    checkpoint if there is one (``steps`` may grow).

    Args:
        cfg: the run's config.
        run_dir: the run directory (held by the caller's :func:`guarded_run`).
        stop: the signals installed for the run.

    Raises:
        RunStopped: a signal or repeated skipped updates stopped the run (after a checkpoint).
        DatasetError: for a dataset that cannot be read.
        ValueError: for more held-out env columns than the data has, or a resume with another
            config (types and ranges: :func:`~torchrl_flowmbpo.config.validate`, run before).
    """
    algo, horizon = cfg.algo, cfg.algo.horizon
    parts = None if cfg.dataset.parts is None else list(cfg.dataset.parts)
    data, manifest = load_dataset(cfg.dataset.path, parts, cfg.dataset.max_frames)
    train, held_out = held_out_split(data, cfg.dataset.held_out_envs)
    reward_norm = make_reward_normalization(cfg).to(cfg.device)
    train_buffer = make_slice_buffer(
        train,
        slice_len=horizon,
        batch_size=algo.wm_batch_slices * horizon,
        transform=reward_norm,
    )
    torch.manual_seed(cfg.seed + 1)  # the same held-out sample in every session of a run
    eval_slices = (
        make_slice_buffer(held_out, slice_len=horizon, batch_size=cfg.eval.slices * horizon)
        .sample()
        .reshape(-1, horizon)
    )
    torch.manual_seed(cfg.seed)
    spec = world_model_spec(cfg)
    obs_dim, action_dim = manifest["obs_dim"], manifest["action_dim"]
    world_model = build_world_model(spec, obs_dim, action_dim).to(cfg.device)
    wm_loss = make_world_model_loss(cfg, world_model)
    reward_norm.update(train.get(("next", "reward")))
    balance = make_termination_balance(cfg, cfg.device)
    if balance is not None:
        balance.observe_data(train.get(("next", "terminated")))
    optimizer = torch.optim.Adam(world_model.parameters(), lr=algo.wm_lr)
    modules = {"world_model": world_model, "reward_norm": reward_norm}
    if balance is not None:
        modules["termination_balance"] = balance
    optimizers = {"world_model": optimizer}
    specs = {
        "world_model": spec,
        "env": {"name": manifest["task"], "kwargs": manifest["env_kwargs"]},
        "dims": {"observation": obs_dim, "action": action_dim},
        "dataset": {
            "path": str(Path(cfg.dataset.path).resolve()),
            "parts": parts,
            "max_frames": cfg.dataset.max_frames,
        },
    }
    counters = {"step": 0, "elapsed_s": 0.0, "skipped_steps": 0}
    log = MetricsCSV(run_dir / "metrics.csv")
    checkpointer = RunCheckpointer(
        run_dir / "checkpoints",
        cfg,
        modules,
        optimizers,
        counters=counters,
        history={},
        specs=specs,
        counter="step",
        may_change=PRETRAIN_RESUMABLE,
    )
    latest = checkpointer.resume()
    # Rows after the checkpoint (all of them for a run killed before its first) come again.
    log.drop_after(counters["step"] if latest is not None else -1)
    if latest is not None:
        print(f"Resumed from {latest} (step {counters['step']}).")
    if checkpointer.finished_run("step", cfg.steps):
        print(f"{run_dir} holds a finished run ({cfg.steps} steps): nothing to do.")
        return

    gradient_check = None
    if cfg.eval.gradient_states:
        states = eval_slices["observation"][: cfg.eval.gradient_states, 0]
        generator = torch.Generator().manual_seed(cfg.seed + 2)
        reach = cfg.eval.gradient_action_range
        shape = (states.shape[0], cfg.eval.gradient_horizon, action_dim)
        actions = (torch.rand(shape, generator=generator) * 2 - 1) * reach
        env = make_env(
            manifest["task"],
            num_envs=states.shape[0],
            device=cfg.device,
            seed=cfg.seed,
            **manifest["env_kwargs"],
        )
        gradient_check = make_gradient_check(env, states, actions, reward_norm, gamma=algo.gamma)

    def evaluate(train_loss: float) -> None:
        world_model.eval()
        metrics = held_out_metrics(
            world_model,
            reward_norm,
            eval_slices,
            held_out.reshape(-1),
            gamma=algo.gamma,
            gradient_check=gradient_check,
        )
        world_model.train()
        log.append(
            {
                "step": counters["step"],
                "elapsed_s": clock.tick(),
                "train_loss": train_loss,
                **metrics,
            }
        )

    guard = RunGuard(checkpointer, stop)
    clock = RunClock(counters)
    if counters["step"] == 0:
        evaluate(float("nan"))
    params = list(world_model.parameters())
    checkpointer.restore_rng()  # last: the objects built before drew from the RNGs
    guard.skips.observe(counters["skipped_steps"])
    losses: list[torch.Tensor] = []
    with tqdm(total=cfg.steps, initial=counters["step"], unit="steps") as progress:
        while counters["step"] < cfg.steps:
            batch = train_buffer.sample().reshape(-1, horizon)
            if balance is not None:
                balance.observe_batch(batch.get(("next", "terminated")))
                wm_loss.term_pos_weight.fill_(balance.weight())
            out = wm_loss(batch)
            loss = sum(value for key, value in out.items() if key.startswith("loss_"))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if torch.isfinite(torch.nn.utils.clip_grad_norm_(params, algo.wm_grad_clip)):
                optimizer.step()  # a non-finite gradient is skipped, as online
            else:
                counters["skipped_steps"] += 1
            losses.append(loss.detach())
            counters["step"] += 1
            progress.update(1)
            step = counters["step"]
            if step % cfg.eval.interval == 0 or step == cfg.steps:
                mean_loss = float(torch.stack(losses).mean())
                losses.clear()
                progress.set_postfix(loss=f"{mean_loss:.3f}")
                evaluate(mean_loss)
            clock.tick()
            if step < cfg.steps:  # the final checkpoint follows
                guard.after_iteration(skipped_total=counters["skipped_steps"])
    path = guard.save(finished=True)
    last = log.rows()[-1]
    print(
        f"Held-out at step {last['step']}: reward corr {float(last['reward_corr_mean']):.3f}, "
        f"{horizon}-step return corr {float(last['return_corr']):.3f}, latent error "
        f"{float(last['latent_error_mean']):.4f}; metrics: {log.path}; checkpoint: {path}"
    )
