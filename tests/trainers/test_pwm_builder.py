"""build_pwm_trainer: a default run builds only its training and evaluation simulators, and
``diagnostics=full`` adds the research hooks and their simulators (the critic check's, the
probe's)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

from torchrl_flowmbpo.trainers import build_pwm_trainer, factories
from torchrl_flowmbpo.trainers.run_guard import RunGuard
from torchrl_flowmbpo.trainers.stopping import StopSignals

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
#: 2 cartpoles x 16 steps = 32 frames per batch, the first of them random: 4 iterations, each
#: followed by an evaluation.
TINY = (
    "env=cartpole",
    "env.num_envs=2",
    "+env.kwargs.episode_length=20",
    "collector.total_frames=128",
    "collector.init_random_frames=32",
    "algo.wm_warmup_steps=1",
    "algo.wm_batch_slices=4",
    "algo.critic_iterations=1",
    "eval.interval=1",
    "eval.episodes=1",
    "eval.num_envs=1",
    "logger=none",
    "threads=1",
)


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[*TINY, *overrides])


def train_counting_simulators(cfg, run_dir: Path, monkeypatch) -> tuple[list[int], object]:
    """Trains ``cfg``'s run; returns the env counts of every simulator built, and the trainer."""
    built = []
    make_env = factories.make_env

    def counting(name, *, num_envs, **kwargs):
        built.append(num_envs)
        return make_env(name, num_envs=num_envs, **kwargs)

    monkeypatch.setattr(factories, "make_env", counting)
    trainer, notes = build_pwm_trainer(cfg, run_dir)
    assert notes == []
    trainer.train(RunGuard(trainer.checkpointer, StopSignals()))
    return built, trainer


def test_default_run_builds_no_extra_simulator(tmp_path, monkeypatch):
    built, trainer = train_counting_simulators(compose_config(), tmp_path, monkeypatch)
    assert built == [2, 1]  # the training envs, then the evaluation env
    assert all(not ops for ops in trainer._ops.values())
    assert trainer.counters["iteration"] == 4 and len(trainer.history["eval/return"]) == 4


def test_full_diagnostics_register_hooks_and_build_their_simulators(tmp_path, monkeypatch):
    cfg = compose_config("diagnostics=full", "diagnostics.interval=1", "diagnostics.probe_envs=3")
    built, trainer = train_counting_simulators(cfg, tmp_path, monkeypatch)
    # Training, evaluation, then at the first evaluation the critic check's and the probe's.
    assert built == [2, 1, 1, 3]
    stages = {stage for stage, ops in trainer._ops.items() if ops}
    assert stages == {"batch_process", "post_optim", "post_eval"}
