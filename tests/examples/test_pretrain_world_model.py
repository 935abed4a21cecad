"""examples/pretrain_world_model.py on a tiny synthetic cartpole dataset: held-out metrics are
written at the set steps, the checkpoint holds the model and the reward normaliser fitted to the
training split, and a rerun resumes from the latest checkpoint's step (rows after it dropped)."""

from __future__ import annotations

import csv
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

from torchrl_flowmbpo.data import held_out_split, load_dataset
from torchrl_flowmbpo.trainers import load_checkpoint
from torchrl_flowmbpo.trainers.checkpointing import RunCheckpoints

#: 6 steps of 8-slice batches, metrics every 3 steps, the gradient check at 2 states.
TINY = (
    "world_model=mlp algo.horizon=4 algo.wm_batch_slices=8 dataset.held_out_envs=1 "
    "eval.interval=3 checkpoint.interval=3 eval.slices=8 eval.gradient_states=2 "
    "eval.gradient_horizon=2 threads=1"
)


@pytest.fixture(scope="module")
def start(scripts, tmp_path_factory):
    """``start(args, run_dir) -> PendingRun`` of pretrain_world_model.py on the tiny dataset."""
    module = sys.modules[type(scripts).__module__]
    pending_run = module.PendingRun
    dataset = module.make_tiny_dataset(tmp_path_factory.mktemp("dataset") / "ds")

    def run(args: str, run_dir: Path):
        cwd = tmp_path_factory.mktemp("pretrain")
        full = f"{TINY} dataset.path={dataset} hydra.run.dir={run_dir} {args}".split()
        return pending_run("pretrain_world_model.py", full, cwd, run_dir)

    return run


@pytest.fixture(scope="module")
def first(start, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pretrain_first") / "run"
    return start("steps=6", run_dir).result().check()


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def test_metrics_rows_at_the_set_steps_are_finite(first):
    table = rows(first.run_dir)
    assert [int(r["step"]) for r in table] == [0, 3, 6]
    assert table[0]["train_loss"] == "" and float(table[-1]["train_loss"]) > 0
    finite = ("latent_error_h1", "latent_error_h4", "return_mae", "term_brier", "reward_mae_mean")
    for name in finite:
        assert all(math.isfinite(float(r[name])) for r in table), name
    # The gradient check ran (2 states x 2 steps x 1 action dim); at step 0 the zero-initialised
    # reward head has no action gradient, so its cosine is undefined (an empty cell).
    assert table[0]["grad_grad_cos_mean"] == ""
    assert all(-1 <= float(r["grad_grad_cos_mean"]) <= 1 for r in table[1:])
    assert all(math.isfinite(float(r["grad_real_return_mean"])) for r in table)
    assert "Held-out at step 6" in first.stdout


def test_checkpoint_holds_model_and_training_split_normaliser(first, tmp_path):
    state = load_checkpoint(first.run_dir)
    assert state["counters"]["step"] == 6
    assert state["specs"]["dims"] == {"observation": 5, "action": 1}
    assert state["specs"]["world_model"]["type"] == "mlp"
    assert "pretrained" not in state["specs"]["world_model"]
    data, _ = load_dataset(state["specs"]["dataset"]["path"])
    train, _ = held_out_split(data, 1)
    # reward_norm "scale": the running variance of every training reward, each counted once.
    var = state["modules"]["reward_norm"]["stats.var"]
    expected = train["next", "reward"].double().var(unbiased=False)
    # (float32 rewards accumulated in float64: 1e-5; all four columns would differ by ~1e-2.)
    torch.testing.assert_close(var, expected.reshape(var.shape), rtol=1e-5, atol=0)


def test_rerun_resumes_from_latest_checkpoint_and_drops_later_rows(first, start, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(first.run_dir, run_dir)
    # As if the run had stopped after step 3's checkpoint and step 6's metrics row.
    RunCheckpoints(run_dir / "checkpoints").candidates()[0].unlink()
    second = start("steps=9", run_dir).result().check()
    assert "Resumed from" in second.stdout and "(step 3)" in second.stdout
    assert [int(r["step"]) for r in rows(run_dir)] == [0, 3, 6, 9]
    assert load_checkpoint(run_dir)["counters"]["step"] == 9


def test_a_run_killed_and_resumed_ends_with_the_weights_of_the_uninterrupted_run(
    first, start, tmp_path
):
    """Exact resume: weights, optimiser, normaliser, RNG states and counters all come back."""
    run_dir = tmp_path / "run"
    shutil.copytree(first.run_dir, run_dir)
    RunCheckpoints(run_dir / "checkpoints").candidates()[0].unlink()  # killed after step 3
    start("steps=6", run_dir).result().check()
    expected, resumed = load_checkpoint(first.run_dir), load_checkpoint(run_dir)
    assert resumed["counters"]["step"] == 6
    for module, state in expected["modules"].items():
        for name, value in state.items():
            assert torch.equal(value, resumed["modules"][module][name]), f"{module}.{name}"
    for name, value in expected["optimizers"]["world_model"]["state"].items():
        assert torch.equal(
            value["exp_avg"], resumed["optimizers"]["world_model"]["state"][name]["exp_avg"]
        )


def test_a_finished_run_rerun_changes_nothing(first, start, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(first.run_dir, run_dir)

    def written() -> dict:
        # Less the records of each start: Hydra's, the log, the lock's holder, provenance.json.
        return {
            p: p.read_bytes()
            for p in run_dir.rglob("*")
            if p.is_file()
            and ".hydra" not in p.parts
            and p.suffix not in (".log", ".lock")
            and p.name != "provenance.json"
        }

    before = written()
    second = start("steps=6", run_dir).result().check()
    assert "finished run" in second.stdout
    assert written() == before


def test_other_config_does_not_resume(first, start, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(first.run_dir, run_dir)
    run = start("steps=9 algo.wm_lr=1e-3", run_dir).result()
    assert run.returncode != 0 and "algo.wm_lr" in run.stderr
