"""``sim_state`` / ``load_sim_state``: a fresh env loaded with a saved state continues the
episodes in progress bit for bit, resets included."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase

from torchrl_flowmbpo.envs.locomotion import make_env

#: (task, kwargs): both cartpole tasks and a locomotion task; 12-step episodes, so the steps
#: after the capture (at step 7) run into truncations and resets that draw reset noise.
TASKS = {
    "cartpole": ("cartpole", {"episode_length": 12}),
    "cartpole_balance": ("cartpole", {"episode_length": 12, "start_angle": 0.0}),
    # SHAC's: the simulator's state travels in the TensorDict, the clocks and noise in sim_state
    "cartpole_differentiable": ("cartpole", {"episode_length": 12, "differentiable": True}),
    "ant": ("ant", {"episode_length": 12}),
}
NUM_ENVS, BEFORE, AFTER = 3, 7, 20


def _steps(env: EnvBase, carried: TensorDictBase, actions: torch.Tensor) -> TensorDictBase:
    """Steps ``env`` from ``carried`` with ``actions`` ``[T, N, A]`` (resetting finished
    episodes, as a collector does); returns the stacked outputs, ``carried`` updated."""
    outputs = []
    for action in actions:
        carried.set("action", action)
        out, next_carried = env.step_and_maybe_reset(carried)
        outputs.append(out["next"].clone())
        carried.update(next_carried)
    return torch.stack(outputs)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_a_loaded_state_continues_the_episodes_bit_for_bit(task: str) -> None:
    name, kwargs = TASKS[task]
    env = make_env(name, num_envs=NUM_ENVS, seed=0, **kwargs)
    generator = torch.Generator().manual_seed(1)
    shape = (NUM_ENVS, *env.action_spec.shape[1:])
    actions = 2.0 * torch.rand(BEFORE + AFTER, *shape, generator=generator) - 1.0
    carried = env.reset()
    _steps(env, carried, actions[:BEFORE])
    state, saved = env.sim_state(), carried.clone()
    expected = _steps(env, carried, actions[BEFORE:])
    assert expected["done"].any(), "no episode ended after the capture"

    fresh = make_env(name, num_envs=NUM_ENVS, seed=5, **kwargs)
    fresh.reset()
    fresh.load_sim_state(state)
    resumed = _steps(fresh, saved, actions[BEFORE:])
    for key in ("observation", "reward", "done", "terminated", "truncated"):
        assert torch.equal(resumed[key], expected[key]), key


def test_a_state_is_a_copy_of_tensors_only() -> None:
    env = make_env("cartpole", num_envs=2, seed=0)
    env.rollout(3, break_when_any_done=False)
    state = env.sim_state()
    before = state.clone()
    env.rollout(3, break_when_any_done=False)
    assert (state == before).all()
    assert all(isinstance(v, torch.Tensor) for v in state.values(True, True))
    assert state["sim", "solver", "qacc_warmstart"].shape == (2, 2)


def test_a_state_of_another_shape_is_refused() -> None:
    state = make_env("cartpole", num_envs=2, seed=0).sim_state()
    with pytest.raises(ValueError, match="step_count"):
        make_env("cartpole", num_envs=3, seed=0).load_sim_state(state)
