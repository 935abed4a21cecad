"""A training run's state, the same for PWM, SHAC and SAC: its counters, its learning curve and
its checkpoints, resumed from the run directory's latest checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from torchrl_flowmbpo.trainers.run_checkpointer import RunCheckpointer, env_generators

__all__ = ["report_resume", "resume_run_state"]


def resume_run_state(
    cfg: DictConfig,
    run_dir: Path,
    modules: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    env: Any,
    *,
    specs: dict[str, Any],
    counters: Mapping[str, Any] | None = None,
    schedulers: Mapping[str, Any] | None = None,
    replay_buffer: Any = None,
) -> tuple[RunCheckpointer, list[str]]:
    """The run's checkpointer, resumed from ``run_dir``'s latest checkpoint if there is one.

    Its ``counters`` (``iteration``, ``frames``, ``elapsed_s`` and the loop's own) and its
    ``history`` (the learning curve's ``train/return`` and ``eval/return`` points) are the
    resumed run's; the rows logged under ``run_dir/logs`` after the checkpoint are dropped.

    Args:
        cfg: the run's config.
        run_dir: the run directory (``checkpoints/``, ``logs/``).
        modules: the modules saved, by name.
        optimizers: the optimisers, by name.
        env: the training env (its reset RNG is saved with the process's).

    Keyword Args:
        specs: the constructor specs stored in checkpoints.
        counters: the loop's counters besides the common ones, with their initial values.
        schedulers: the LR schedulers, by name.
        replay_buffer: the replay buffer saved with checkpoints (None: none).

    Returns:
        The checkpointer and notes for the run log (the checkpoint resumed from, rows dropped).

    Raises:
        ValueError: for a resume with another config (the keys that differ are named).
    """
    checkpointer = RunCheckpointer(
        run_dir / "checkpoints",
        cfg,
        modules,
        optimizers,
        counters={"iteration": 0, "frames": 0, **(counters or {}), "elapsed_s": 0.0},
        history={"train/return": [], "eval/return": []},
        specs=specs,
        schedulers=schedulers,
        replay_buffer=replay_buffer,
        generators=env_generators(env),
    )
    return checkpointer, checkpointer.resume_run(run_dir / "logs")


def report_resume(
    checkpointer: RunCheckpointer, notes: list[str], run_dir: Path, key: str, total: int
) -> bool:
    """Prints the resume ``notes``; whether the run resumed is finished (``counters[key]`` at
    ``total``: then it says there is nothing to do)."""
    for note in notes:
        print(note)
    if not checkpointer.finished_run(key, total):
        return False
    print(f"{run_dir} holds a finished run: nothing to do.")
    return True
