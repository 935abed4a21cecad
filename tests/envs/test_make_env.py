"""make_env: names, kwargs, import hygiene (no simulator is built here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from torchrl_flowmbpo.envs.locomotion import TASKS, make_env, task_kwargs


def test_tasks() -> None:
    assert sorted(TASKS) == ["ant", "anymal", "cartpole", "humanoid"]


def test_unknown_task_is_named() -> None:
    with pytest.raises(ValueError, match=r"'cheetah'.*\['ant', 'anymal', 'cartpole', 'humanoid'\]"):
        make_env("cheetah", num_envs=2)


def test_unknown_kwarg_is_named() -> None:
    # dflex's misspelling must not be silently accepted.
    with pytest.raises(ValueError, match=r"\['heigh_rew_scale'\].*height_reward_scale"):
        make_env("anymal", num_envs=2, heigh_rew_scale=1.0)
    with pytest.raises(ValueError, match="termination_tolerance"):
        make_env("ant", num_envs=2, termination_tolerance=0.1)


def test_task_kwargs() -> None:
    common = {"episode_length", "action_scale", "reset_noise", "action_penalty", "capture"}
    for name in TASKS:
        assert common <= set(task_kwargs(name))
        assert ("termination_height" in task_kwargs(name)) == (name != "cartpole")
    assert "termination_tolerance" in task_kwargs("humanoid")
    assert "joint_stiffness" in task_kwargs("anymal")


def test_import_does_not_load_simulator() -> None:
    code = (
        "import sys, torchrl_flowmbpo.envs.locomotion; "
        "assert 'newton' not in sys.modules and 'warp' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
