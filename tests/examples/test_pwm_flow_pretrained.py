"""examples/pwm_flow.py world_model.pretrained=...: a frozen pretrained world model (and its
reward normaliser) never changes and its LR schedule stays put, a fine-tuned one does, the run's
checkpoint records the pretrained model's spec, and a model of other dimensions than the task's
fails in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from torchrl_flowmbpo.trainers import load_checkpoint

#: Four batches of 64 frames on 4 cartpoles: the first two random, training from the second on.
EXTRACT = (
    "env=cartpole_balance env.num_envs=4 collector.total_frames=256 eval.episodes=1 "
    "eval.num_envs=1 logger=none diagnostics.interval=0 seed=1 hydra.run.dir=DIR"
)


@pytest.fixture(scope="module")
def pretrain(scripts, tmp_path_factory):
    """``pretrain(obs_dim) -> run dir``: 4 offline steps of an MLP world model."""
    module = sys.modules[type(scripts).__module__]

    def run(obs_dim: int) -> Path:
        root = tmp_path_factory.mktemp(f"pretrain{obs_dim}")
        dataset = module.make_tiny_dataset(root / "ds", obs_dim=obs_dim)
        args = (
            f"world_model=mlp dataset.path={dataset} dataset.held_out_envs=1 steps=4 "
            "eval.interval=2 eval.slices=4 eval.gradient_states=0 algo.wm_batch_slices=4 "
            f"algo.horizon=4 threads=1 hydra.run.dir={root / 'run'}"
        )
        pending = module.PendingRun("pretrain_world_model.py", args.split(), root, root / "run")
        return pending.result().check().run_dir

    return run


@pytest.fixture(scope="module")
def pretrained(pretrain) -> Path:
    return pretrain(5)


@pytest.fixture(scope="module")
def extractions(scripts, pretrained):
    """The frozen and the fine-tuned extraction runs, started together."""
    runs = {
        finetune: scripts.start_training(
            f"{EXTRACT} world_model=mlp world_model.pretrained={pretrained} "
            f"world_model.finetune={finetune}"
        )
        for finetune in ("false", "true")
    }
    return {name: run.result().check() for name, run in runs.items()}


def max_change(before: dict, after: dict) -> float:
    return max(float((after[k].double() - before[k].double()).abs().max()) for k in before)


def test_frozen_world_model_and_normaliser_do_not_change(extractions, pretrained):
    start = load_checkpoint(pretrained)["modules"]
    end = load_checkpoint(extractions["false"].run_dir)
    assert max_change(start["world_model"], end["modules"]["world_model"]) == 0.0
    assert max_change(start["reward_norm"], end["modules"]["reward_norm"]) == 0.0
    # The actor did train (from a fresh initialisation), through the frozen model.
    assert end["counters"]["iteration"] == 3
    assert end["specs"]["world_model"] == load_checkpoint(pretrained)["specs"]["world_model"]


def test_frozen_world_model_keeps_its_lr_schedule_without_a_warning(extractions):
    # A frozen model's optimiser never steps: stepping its scheduler would make PyTorch warn
    # ("lr_scheduler.step() before optimizer.step()") and decay an LR nothing uses.
    assert "lr_scheduler.step()" not in extractions["false"].stderr
    frozen = load_checkpoint(extractions["false"].run_dir)["schedulers"]
    assert frozen["world_model"]["last_epoch"] == 0 and frozen["actor"]["last_epoch"] == 3
    tuned = load_checkpoint(extractions["true"].run_dir)["schedulers"]
    assert tuned["world_model"]["last_epoch"] == tuned["actor"]["last_epoch"] == 3


def test_fine_tuned_world_model_changes(extractions, pretrained):
    start = load_checkpoint(pretrained)["modules"]
    end = load_checkpoint(extractions["true"].run_dir)["modules"]
    assert max_change(start["world_model"], end["world_model"]) > 1e-4
    # The normaliser keeps counting the on-line rewards after the pretraining's.
    assert float(end["reward_norm"]["stats.count"]) > float(start["reward_norm"]["stats.count"])


def test_pretrained_model_of_other_dimensions_fails_in_one_line(scripts, pretrain):
    other = pretrain(7)
    run = scripts.start_training(
        f"{EXTRACT} world_model=mlp world_model.pretrained={other}"
    ).result()
    assert run.returncode == 1
    message = run.stderr.strip().splitlines()[-1]
    assert "with observation size 7 and action size 1; task 'cartpole' has 5 and 1" in message


def test_finetune_false_needs_a_pretrained_model(scripts):
    run = scripts.start_training(f"{EXTRACT} world_model.finetune=false").result()
    assert run.returncode == 1 and "set world_model.pretrained=PATH" in run.stderr
