"""Pretrain a world model offline on a recorded dataset, logging held-out accuracy (PWM's protocol).

    python examples/pretrain_world_model.py dataset.path=runs/datasets/anymal_sac world_model=mlp
    python examples/pretrain_world_model.py dataset.path=... world_model=flow \\
        world_model.flow_steps=4 steps=20000 hydra.run.dir=runs/pretrain/flow

The loop is :func:`~torchrl_flowmbpo.trainers.pretrain_world_model`: the dataset's episodes are
split by env column (``dataset.held_out_envs`` held out), the training split fills the
``SliceSampler`` replay buffer of the online pipeline, and every ``eval.interval`` steps the
held-out metrics are appended to ``<run dir>/metrics.csv``; checkpoints
(``checkpoints/checkpoint-<step>.torchrl``) hold the model, the normaliser, the optimiser and
the RNG states, and re-running the command in the same run directory resumes from the latest
one (``steps`` may grow). ``pwm_flow.py world_model.pretrained=<run dir>`` extracts a policy
from the result.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from torchrl_flowmbpo.config import hydra_main
from torchrl_flowmbpo.data import DatasetError
from torchrl_flowmbpo.trainers import pretrain_world_model
from torchrl_flowmbpo.trainers.checkpointing import LegacyCheckpointError
from torchrl_flowmbpo.trainers.console import interrupted, quiet_console
from torchrl_flowmbpo.trainers.run_guard import guarded_run


@hydra_main("pretrain")  # the config schema checks every key first
def main(cfg: DictConfig) -> None:
    torch.set_num_threads(cfg.threads)
    quiet_console(cfg.device)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with guarded_run(run_dir, "pretrain_world_model.py", config=cfg) as stop:  # one per run dir
        try:
            pretrain_world_model(cfg, run_dir, stop)
        except (DatasetError, ValueError, TypeError) as err:
            sys.exit(f"Invalid configuration: {err}")
        except LegacyCheckpointError as err:
            sys.exit(f"pretrain_world_model.py: {err}")


if __name__ == "__main__":
    with interrupted("pretrain_world_model.py"):
        main()
