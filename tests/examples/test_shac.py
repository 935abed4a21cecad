"""Smoke runs of ``examples/pwm_flow.py experiment=shac``: SHAC trains through the differentiable
cartpole, logs, evaluates, checkpoints, resumes; a task without a differentiable simulator is
refused before anything is built."""

from __future__ import annotations

import itertools
import json
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from torchrl_flowmbpo.trainers import load_checkpoint

#: 4 envs x 8 steps = 32 frames per iteration, 6 iterations, evaluation at 3 and 6.
SHAC = (
    "experiment=shac env=cartpole env.num_envs=4 algo.horizon=8 collector.total_frames=192 "
    "algo.critic_iterations=2 eval.episodes=2 eval.num_envs=2 eval.interval=3 "
    "checkpoint.interval=2 seed=1 threads=1 hydra.run.dir=DIR +env.kwargs.episode_length=20"
)


@pytest.fixture(scope="module")
def shac_run(scripts, tmp_path_factory):
    return scripts.start_training(SHAC, tiny=False).result().check()


def test_shac_run_logs_evaluates_and_checkpoints(shac_run, read_scalars):
    (log_dir,) = (shac_run.run_dir / "logs").iterdir()
    assert log_dir.name == "shac_cartpole_seed1"
    steps, _ = read_scalars(log_dir / "scalars" / "loss/actor.csv")
    assert steps == [32.0 * i for i in range(1, 7)]
    eval_steps, _ = read_scalars(log_dir / "scalars" / "eval/return.csv")
    assert eval_steps == [96.0, 192.0]
    # 20-step episodes end inside the windows: training returns are logged.
    train_steps, _ = read_scalars(log_dir / "scalars" / "train/return.csv")
    assert train_steps and all(b > a for a, b in itertools.pairwise(train_steps))
    assert "Evaluation (2 episodes, deterministic)" in shac_run.stdout
    state = load_checkpoint(shac_run.run_dir)
    assert state["counters"]["iteration"] == 6 and state["variant"] == "shac"
    assert "world_model" not in state["modules"] and "world_model" not in state["specs"]
    assert state["config"]["algo"]["name"] == "shac"
    assert state["specs"]["actor"]["latent_key"] == "observation"
    assert set(state["optimizers"]) == {"actor", "critic"}


def test_shac_rerun_resumes_and_extends(scripts, shac_run):
    longer = (
        scripts.start_training(
            SHAC.replace("total_frames=192", "total_frames=256"),
            run_dir=shac_run.run_dir,
            tiny=False,
        )
        .result()
        .check()
    )
    assert "Resumed from" in longer.stdout and "(iteration 6)" in longer.stdout
    state = load_checkpoint(longer.run_dir)
    assert state["counters"]["iteration"] == 8 and state["counters"]["frames"] == 256


def test_resume_with_another_config_is_refused_in_one_line(scripts, shac_run, tmp_path):
    run_dir = tmp_path / "run"  # a copy: the other tests see the run unchanged
    shutil.copytree(shac_run.run_dir, run_dir)

    def run_files() -> dict:
        # Hydra rewrites .hydra/ at every start; the lock and provenance.json record each one.
        starts = (".run.lock", "provenance.json")
        paths = (p for p in run_dir.rglob("*") if p.is_file() and ".hydra" not in p.parts)
        return {p: p.stat().st_mtime_ns for p in paths if p.name not in starts}

    before = run_files()
    refused = scripts.start_training(
        SHAC.replace("seed=1", "seed=2"), run_dir=run_dir, tiny=False
    ).result()
    assert refused.returncode != 0
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("Invalid configuration: ") and "seed: 1 there, 2 now" in line
    assert "Traceback" not in refused.stderr
    assert run_files() == before  # checkpoints, logs and the run log as they were


def test_task_without_a_differentiable_simulator_is_refused(scripts):
    run = scripts.start_training(
        "experiment=shac env=ant threads=1 hydra.run.dir=DIR", tiny=False
    ).result()
    assert run.returncode != 0
    assert (
        "Invalid configuration: env.name='ant' is not allowed; allowed: a task with a "
        "differentiable simulator (cartpole)." in run.stderr
    )
    assert "Traceback" not in run.stderr


def test_actor_carries_observation_statistics_of_every_frame(shac_run):
    state = load_checkpoint(shac_run.run_dir)
    assert state["specs"]["actor"]["input_norm"] and state["specs"]["critic"]["input_norm"]
    assert state["config"]["actor"]["detach_latent"] is False  # SHAC's closed loop

    def stats(module: str) -> dict[str, torch.Tensor]:
        items = state["modules"][module].items()
        prefix = {k.split("input_norm.stats.")[1]: v for k, v in items if "input_norm.stats." in k}
        return {k: v for k, v in prefix.items() if k in ("mean", "var", "count")}

    actor = stats("actor")
    assert not stats("critic")  # the critic reads the actor's normaliser without owning it
    # Every observation the actor acted on (one per frame), plus the prior's 1e-4.
    assert actor["count"].item() == pytest.approx(state["counters"]["frames"] + 1e-4)
    assert actor["var"].min() > 0 and not torch.equal(actor["mean"], torch.zeros(5).double())


def test_run_directory_records_its_provenance(shac_run):
    record = json.loads((shac_run.run_dir / "provenance.json").read_text())
    first = record["starts"][0]
    assert first["finished"] is not None and first["started"] <= first["finished"]
    assert any("experiment=shac" in arg for arg in first["argv"])
    assert len(first["commit"] or "x" * 40) == 40 and record["packages"]["torchrl"] == "0.14.1"
    config = OmegaConf.load(shac_run.run_dir / "config.yaml")
    assert config.algo.name == "shac" and config.seed == 1
