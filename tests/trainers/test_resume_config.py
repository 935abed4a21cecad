"""trainers.resume: a rerun resumes only with the config its run was started with (outside the
keys that say how and how long it runs)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from torchrl_flowmbpo.trainers import resume

SAVED = {
    "seed": 0,
    "threads": 2,
    "device": "cpu",
    "algo": {"gamma": 0.99, "wm_updates_per_iter": 2, "units": [256, 256]},
    "collector": {"total_frames": 1000, "init_random_frames": 64},
    "logger": {"backend": "csv", "mode": "offline"},
    "checkpoint": {"interval": 5},
    "env": {"name": "ant", "kwargs": {}},
}


@pytest.fixture(scope="module")
def support():
    return resume


def _with(**changes: object) -> dict:
    config = OmegaConf.create(SAVED)
    for key, value in changes.items():
        OmegaConf.update(config, key.replace("__", "."), value)
    return OmegaConf.to_container(config)


def test_identical_configs_have_no_changes(support):
    assert support.config_changes(SAVED, _with()) == {}


def test_changed_keys_are_listed_with_both_values(support):
    current = _with(algo__gamma=0.98, algo__units=[512, 512], seed=1)
    assert support.config_changes(SAVED, current) == {
        "algo.gamma": (0.99, 0.98),
        "algo.units": ([256, 256], [512, 512]),
        "seed": (0, 1),
    }


def test_how_and_how_long_a_run_runs_may_change(support):
    current = _with(
        threads=1,
        device="cuda",
        logger__backend="wandb",
        checkpoint__interval=1,
        collector__total_frames=5000,
    )
    assert support.config_changes(SAVED, current) == {}
    # A prefix covers its subtree, not keys that merely start with the same letters.
    assert support.config_changes({"threads_x": 1}, {"threads_x": 2}) == {"threads_x": (1, 2)}


def test_keys_of_one_config_only_are_not_changes(support):
    current = _with()
    current["algo"]["new_option"] = 1.0
    del current["collector"]["init_random_frames"]
    assert support.config_changes(SAVED, current) == {}


def test_task_keyword_arguments_are_compared_whole(support):
    current = _with()
    current["env"]["kwargs"] = {"episode_length": 100}
    assert support.config_changes(SAVED, current) == {"env.kwargs": ({}, {"episode_length": 100})}
