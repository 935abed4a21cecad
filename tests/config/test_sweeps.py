"""Sweep bundles: the launchers they select and the parameters they resolve to."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from torchrl_flowmbpo.config import CONFIG_DIR, register_configs


def _compose(*overrides: str, config: str = "config"):
    register_configs()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(config, overrides=list(overrides), return_hydra_config=True)


def test_local_sweep_uses_joblib_with_one_thread_per_run() -> None:
    cfg = _compose("sweep=local", "experiment=flow_wm", "seed=3")
    assert cfg.hydra.launcher._target_.endswith("joblib_launcher.JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs * cfg.threads == 2  # the two cores of a CI machine
    assert cfg.hydra.sweep.dir == "sweeps/cartpole_balance"
    assert cfg.hydra.sweep.subdir == "flow_wm/seed3"


def test_sac_takes_the_same_sweep_bundle_without_a_plus() -> None:
    cfg = _compose("sweep=local", "env=anymal", "seed=2", config="sac")
    assert cfg.hydra.launcher._target_.endswith("joblib_launcher.JoblibLauncher")
    assert (cfg.hydra.sweep.dir, cfg.hydra.sweep.subdir) == ("sweeps/anymal", "sac/seed2")
    assert cfg.threads == 1


@pytest.mark.parametrize(("env", "folder"), [("cartpole", "cartpole"), ("anymal", "anymal")])
def test_sweep_directory_is_named_by_the_task_choice(env: str, folder: str) -> None:
    cfg = _compose("sweep=local", f"env={env}", "experiment=baseline", "seed=0")
    assert (cfg.hydra.sweep.dir, cfg.hydra.sweep.subdir) == (f"sweeps/{folder}", "baseline/seed0")


def test_slurm_sweep_resolves_its_job_parameters() -> None:
    cfg = _compose(
        "sweep=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=60",
        "experiment=baseline",
        "seed=1",
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node) == ("gpu", 60, 1)
    assert (launcher.cpus_per_task, cfg.threads, launcher.mem_gb) == (8, 8, 32)
    assert launcher.max_num_timeout == 5 and launcher.signal_delay_s == 120
    assert cfg.device == "cuda"
    assert launcher.submitit_folder == "sweeps/cartpole_balance/.submitit/%j"


def test_without_a_sweep_bundle_the_default_launcher_is_kept() -> None:
    cfg = _compose()
    assert cfg.hydra.launcher._target_.endswith("BasicLauncher")
    assert cfg.threads == 1  # the default: one thread per run
