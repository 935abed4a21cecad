"""Train TorchRL's SAC on a task of this package: the model-free baseline for PWM.

    python examples/sac_baseline.py                              # cartpole, 150k frames (CPU)
    python examples/sac_baseline.py env=ant env.num_envs=64 sac.utd_ratio=0.5 seed=1

The loop (:func:`~torchrl_flowmbpo.trainers.train_sac`) is TorchRL's sota-implementations/sac:
collect -> extend the replay buffer -> ``round(utd_ratio x frames_per_batch)`` SAC steps -> log ->
evaluate -> checkpoint; every option is in ``configs/sac.yaml``. The env, logger and evaluation
are those of ``pwm_flow.py``, so the two runs' curves compare directly. Re-running a command in
the same run directory (``hydra.run.dir=...``) resumes from its latest checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from torchrl_flowmbpo.config import hydra_main
from torchrl_flowmbpo.trainers import train_sac
from torchrl_flowmbpo.trainers.checkpointing import LegacyCheckpointError
from torchrl_flowmbpo.trainers.console import interrupted, quiet_console
from torchrl_flowmbpo.trainers.run_guard import guarded_run


@hydra_main("sac")  # the config schema checks every key first
def main(cfg: DictConfig) -> None:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    quiet_console(cfg.device)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with guarded_run(
        run_dir, "sac_baseline.py", config=cfg
    ) as stop:  # one process per run directory
        try:
            train_sac(cfg, run_dir, stop)
        except (ValueError, TypeError) as err:
            sys.exit(f"Invalid configuration: {err}")
        except LegacyCheckpointError as err:
            sys.exit(f"sac_baseline.py: {err}")


if __name__ == "__main__":
    with interrupted("sac_baseline.py"):
        main()
