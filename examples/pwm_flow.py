"""Train PWM (and its flow variants) on a Newton locomotion task.

    python examples/pwm_flow.py                                  # embedded default (CPU)
    python examples/pwm_flow.py experiment=flow_wm world_model.flow_steps=4 seed=1
    python examples/pwm_flow.py diagnostics=full                 # + research measurements
    python examples/pwm_flow.py experiment=shac env=cartpole   # SHAC: the simulator's gradients

Build from the config, train, evaluate: the loop is
:class:`~torchrl_flowmbpo.trainers.PWMTrainer` (collect -> extend the replay buffer -> actor,
critic and world-model steps -> log -> evaluate -> checkpoint), built by
:func:`~torchrl_flowmbpo.trainers.build_pwm_trainer`; every option is in ``configs/``.
Re-running a command in the same run directory (``hydra.run.dir=...``) resumes from its latest
checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from torchrl_flowmbpo.config import hydra_main
from torchrl_flowmbpo.trainers import build_pwm_trainer
from torchrl_flowmbpo.trainers.checkpointing import LegacyCheckpointError
from torchrl_flowmbpo.trainers.console import interrupted, quiet_console
from torchrl_flowmbpo.trainers.logs import log_to_file
from torchrl_flowmbpo.trainers.reporting import (
    curve_title,
    plot_learning_curve,
    print_summary,
    task_references,
)
from torchrl_flowmbpo.trainers.run_guard import guarded_run
from torchrl_flowmbpo.trainers.shac import build_shac_trainer, run_shac
from torchrl_flowmbpo.trainers.tasks import task_label


@hydra_main("config")  # the config schema checks every key first
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    quiet_console(cfg.device)
    task = task_label(cfg.env.name, cfg.env.kwargs)
    what_ran = (
        f"pwm_flow.py: {cfg.variant} on {task}, seed {cfg.seed}, {cfg.collector.total_frames:,} "
        f"frames, device {cfg.device}, threads={cfg.threads}; run directory {run_dir}"
    )
    print(what_ran, flush=True)

    def log_start(*notes: str) -> None:
        # Into the run log once the run is accepted: a refused resume leaves the run as it was.
        for line in (what_ran, f"Config:\n{OmegaConf.to_yaml(cfg, resolve=True)}", *notes):
            log_to_file(line)

    shac = cfg.algo.name == "shac"  # experiment=shac: no world model, the simulator's gradients
    with guarded_run(run_dir, "pwm_flow.py", config=cfg) as stop:  # one process per run directory
        try:
            if shac:  # None for a finished run (it says so)
                shac_trainer = build_shac_trainer(cfg, run_dir)
            else:
                trainer, notes = build_pwm_trainer(cfg, run_dir)
        except (ValueError, TypeError) as err:
            sys.exit(f"Invalid configuration: {err}")
        except LegacyCheckpointError as err:
            sys.exit(f"pwm_flow.py: {err}")
        if shac:
            log_start()
            if shac_trainer is not None:
                run_shac(shac_trainer, cfg, run_dir, stop)
            return
        for note in notes:
            print(note)
        log_start(*notes)
        if trainer.checkpointer.finished_run("frames", cfg.collector.total_frames):
            print(
                f"{run_dir} holds a finished run ({trainer.counters['frames']:,} frames): "
                "nothing to do. Raise collector.total_frames to extend it."
            )
            return
        eval_stats, path = trainer.run(stop)
    curve = plot_learning_curve(
        trainer.history,
        run_dir / "learning_curve.png",
        title=curve_title(cfg.variant, task, cfg.seed),
        references=task_references(cfg.env.name, cfg.env.kwargs),
    )
    print_summary(eval_stats, path, curve)


if __name__ == "__main__":
    with interrupted("pwm_flow.py"):
        main()
