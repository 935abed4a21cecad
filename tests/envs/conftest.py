"""Session-scoped Newton task envs: the first Newton/Warp build compiles kernels (~45 s cold)."""

from __future__ import annotations

import pytest

from torchrl_flowmbpo.envs.locomotion import CartPoleEnv, LocomotionEnv, make_env

NUM_ENVS = 8


@pytest.fixture(scope="session")
def ant_env() -> LocomotionEnv:
    return make_env("ant", num_envs=NUM_ENVS, seed=0)


@pytest.fixture(scope="session")
def anymal_env() -> LocomotionEnv:
    return make_env("anymal", num_envs=NUM_ENVS, seed=0)


@pytest.fixture(scope="session")
def humanoid_env() -> LocomotionEnv:
    return make_env("humanoid", num_envs=NUM_ENVS, seed=0)


@pytest.fixture(scope="session")
def cartpole_env() -> CartPoleEnv:
    return make_env("cartpole", num_envs=NUM_ENVS, seed=0)


@pytest.fixture(params=["ant", "anymal", "humanoid"])
def task_env(request: pytest.FixtureRequest) -> LocomotionEnv:
    """Each task's shared env, reseeded and fully reset."""
    env = request.getfixturevalue(f"{request.param}_env")
    env.set_seed(0)
    env.reset()
    return env
