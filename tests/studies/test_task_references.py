"""studies/task_references.py: first-episode returns checked against a hand-summed rollout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchrl_flowmbpo.envs import make_env

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "task_references.py"


@pytest.fixture(scope="module")
def references(load_script):
    return load_script(SCRIPT, "task_references")


@pytest.mark.parametrize(
    ("task", "kwargs", "steps"),
    [
        ("cartpole", {"episode_length": 12}, 12),
        # Sinking under zero torque, the Ant's torso crosses 0.52 m at different steps per world
        # (world 0 after 116 steps): some episodes terminate, the others are truncated.
        ("ant", {"episode_length": 150, "termination_height": 0.52}, 150),
    ],
)
def test_first_episode_return_is_the_sum_up_to_its_first_done(references, task, kwargs, steps):
    returns, lengths = references.first_episodes(
        make_env(task, num_envs=3, seed=5, **kwargs), task, "zero", max_steps=steps
    )
    env = make_env(task, num_envs=3, seed=5, **kwargs)
    td = env.reset()
    total, length = torch.zeros(3), torch.zeros(3)
    running = torch.ones(3, dtype=torch.bool)
    for _ in range(steps):
        td["action"] = torch.zeros(env.action_spec.shape)
        td = env.step(td)["next"]
        total += running * td["reward"].squeeze(-1)
        length += running
        running &= ~td["done"].squeeze(-1)
    torch.testing.assert_close(returns, total)
    torch.testing.assert_close(lengths, length)
    if task == "ant":
        assert lengths.min() < steps  # at least one terminated world is covered


def test_bad_behaviour_and_unfinished_episodes_are_errors(references):
    env = make_env("cartpole", num_envs=2, seed=0, episode_length=10)
    with pytest.raises(ValueError, match=r"behaviour 'still': allowed \('zero', 'random', 'pd'\)"):
        references.first_episodes(env, "cartpole", "still", max_steps=10)
    with pytest.raises(ValueError, match="2 worlds ran 5 steps without done"):
        references.first_episodes(env, "cartpole", "zero", max_steps=5)


def test_main_prints_a_row_per_task_and_behaviour(references, capsys):
    rows = references.main(["--tasks", "cartpole", "--num-envs", "2", "--episode-length", "8"])
    assert [(task, behaviour) for task, behaviour, *_ in rows] == [
        ("cartpole", "zero"),
        ("cartpole", "random"),
        ("cartpole", "pd"),
    ]
    assert all(length == 8 for *_, length in rows)
    assert "| cartpole | zero |" in capsys.readouterr().out
