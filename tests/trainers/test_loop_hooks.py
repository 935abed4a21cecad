"""The hooks of SAC's and SHAC's loops: an op registered on a stage sees the stage's arguments,
and a dict it returns lands in the logged metrics; a run of any loop (PWM's too) stopped mid-loop
closes its progress bar (the stop's message then starts a line of its own)."""

from __future__ import annotations

import importlib
from collections import defaultdict
from pathlib import Path
from typing import ClassVar

import pytest
from hydra import compose, initialize_config_dir
from tensordict import TensorDictBase
from tqdm import tqdm

from torchrl_flowmbpo.trainers import build_pwm_trainer
from torchrl_flowmbpo.trainers.run_guard import RunGuard, RunStopped
from torchrl_flowmbpo.trainers.sac import build_sac_trainer
from torchrl_flowmbpo.trainers.shac import build_shac_trainer
from torchrl_flowmbpo.trainers.stopping import StopSignals

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
COMMON = (
    "env=cartpole",
    "env.num_envs=2",
    "eval.interval=2",
    "eval.episodes=1",
    "eval.num_envs=1",
    "logger=none",
    "threads=1",
)
#: 3 batches of 32 frames, two random: SAC steps once 64 frames are in; evaluation at batch 2.
SAC = (
    "+env.kwargs.episode_length=20",
    "collector.frames_per_batch=32",
    "collector.total_frames=96",
    "sac.init_random_frames=64",
    "sac.batch_size=16",
    "sac.utd_ratio=0.0625",
    "sac.hidden_sizes=[16,16]",
)
#: 3 iterations of 2 envs x 8 steps; evaluation at 2 and after the last.
SHAC = (
    "experiment=shac",
    "+env.kwargs.episode_length=10",
    "algo.horizon=8",
    "collector.total_frames=48",
    "algo.critic_iterations=1",
)
#: The first batch (2 cartpoles x 16 steps) random, one warm-up step, then the stop.
PWM = (
    "collector.init_random_frames=32",
    "algo.wm_warmup_steps=1",
    "algo.wm_batch_slices=4",
    "algo.critic_iterations=1",
)


class ScalarLog:
    """A logger keeping every scalar as ``{name: [(step, value)]}``."""

    def __init__(self) -> None:
        self.scalars: dict[str, list[tuple[int, float]]] = defaultdict(list)

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self.scalars[name].append((step, value))


def train_with_hooks(trainer) -> tuple[dict[str, list[tuple]], ScalarLog]:
    """Registers a recording op on each of the loop's stages, trains; returns the calls and
    the log."""
    calls: dict[str, list[tuple]] = defaultdict(list)
    for stage in ("batch_process", "post_optim", "post_eval", "post_steps_log", "shutdown"):

        def op(*args, stage=stage):
            calls[stage].append(args)
            if stage == "post_optim":
                return {"hook/post_optim": float(len(calls[stage]))}
            if stage == "post_steps_log":
                return {"hook/logged": 1.0}
            return None

        trainer.register_op(stage, op)
    trainer.logger = log = ScalarLog()
    trainer.train(RunGuard(trainer.checkpointer, StopSignals()))
    return calls, log


def compose_config(name: str, overrides: tuple[str, ...]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=[*COMMON, *overrides])


#: Per loop: its config, its builder, a loss it logs after its steps, the frames at which it
#: logs, optimises and evaluates.
LOOPS = {
    "sac": ("sac", SAC, build_sac_trainer, "loss/qvalue", [32, 64, 96], [64, 96], [64]),
    "shac": (
        "config",
        SHAC,
        build_shac_trainer,
        "loss/value",
        [16, 32, 48],
        [16, 32, 48],
        [32, 48],
    ),
}


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_ops_see_their_stage_arguments_and_their_metrics_are_logged(tmp_path, loop):
    name, overrides, build, loss, logged, optimized, evaluated = LOOPS[loop]
    trainer = build(compose_config(name, overrides), tmp_path)
    calls, log = train_with_hooks(trainer)
    assert len(calls["batch_process"]) == 3
    assert all(isinstance(data, TensorDictBase) for (data,) in calls["batch_process"])
    # post_optim: the iteration's metrics (its losses in) and its data.
    for metrics, data in calls["post_optim"]:
        assert loss in metrics and isinstance(data, TensorDictBase)
    assert log.scalars["hook/post_optim"] == [(f, float(i + 1)) for i, f in enumerate(optimized)]
    # post_eval: the metrics with the evaluation's.
    assert all("eval/return" in metrics for (metrics,) in calls["post_eval"])
    assert [f for f, _ in log.scalars["eval/return"]] == evaluated
    assert len(calls["post_eval"]) == len(evaluated)
    # post_steps_log: every iteration, before its metrics are logged.
    assert log.scalars["hook/logged"] == [(f, 1.0) for f in logged]
    assert calls["shutdown"] == [()]


class ClosedBars(tqdm):
    """tqdm that records, per instance, whether it was closed."""

    made: ClassVar[list[ClosedBars]] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.was_closed = False
        ClosedBars.made.append(self)

    def close(self) -> None:
        self.was_closed = True
        super().close()


def build_pwm(cfg, run_dir: Path):
    trainer, _ = build_pwm_trainer(cfg, run_dir)
    return trainer


STOPPED_LOOPS = {
    **{loop: spec[:3] for loop, spec in LOOPS.items()},
    "pwm": ("config", PWM, build_pwm),
}


@pytest.mark.parametrize("loop", sorted(STOPPED_LOOPS))
def test_a_run_stopped_mid_loop_closes_its_progress_bar(tmp_path, loop, monkeypatch):
    name, overrides, build = STOPPED_LOOPS[loop]
    ClosedBars.made = []
    monkeypatch.setattr(
        importlib.import_module(f"torchrl_flowmbpo.trainers.{loop}"), "tqdm", ClosedBars
    )
    trainer = build(compose_config(name, overrides), tmp_path)

    def stop(metrics):
        raise RunStopped("Stopped by SIGINT", 130)

    trainer.register_op("post_steps_log", stop)
    with pytest.raises(RunStopped):
        trainer.train(RunGuard(trainer.checkpointer, StopSignals()))
    # PWM's world-model warm-up has a bar of its own, beside the run's.
    run_bars = [bar for bar in ClosedBars.made if bar.desc != "world-model warm-up"]
    assert len(run_bars) == 1
    assert all(bar.was_closed for bar in ClosedBars.made)
