"""behaviour_probe and its parts: real rollouts, the model's open-loop replay, rank agreement,
the reference behaviours; on a linear system whose perfect model must agree exactly."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from torchrl_flowmbpo.diagnostics import (
    METRIC_PREFIXES,
    behaviour_probe,
    model_replay_rewards,
    rank_agreement,
    real_rollout,
    reference_behaviours,
    reference_probe,
    scalar_metrics,
)
from torchrl_flowmbpo.modules.models import PWMWorldModel

OBS, ACT, ENVS = 2, 1, 5
A = torch.tensor([[0.9, 0.2], [-0.1, 0.8]])
B = torch.tensor([[0.0], [0.5]])


def linear_reward(obs, action):
    return obs[..., :1] - 0.1 * action.pow(2)


class LinearEnv:
    """Batched x' = A x + B a, reward x_0 − 0.1 a²; env i terminates at step ``end[i]``."""

    device = torch.device("cpu")
    action_spec = torch.zeros(ENVS, ACT)  # only its shape is read

    def __init__(self, end=None):
        self.end = end or {}
        self.generator = torch.Generator()

    def set_seed(self, seed):
        self.generator.manual_seed(seed)

    def reset(self):
        self.t = 0
        return TensorDict(observation=torch.randn(ENVS, OBS, generator=self.generator))

    def step(self, td):
        obs, action = td["observation"], td["action"]
        self.t += 1
        terminated = torch.tensor([self.end.get(i) == self.t for i in range(ENVS)])
        td["next"] = TensorDict(
            observation=obs @ A.T + action @ B.T,
            reward=linear_reward(obs, action),
            terminated=terminated.unsqueeze(-1),
        )
        return td

    def step_mdp(self, td):
        return TensorDict(observation=td["next", "observation"])


class PerfectModel(torch.nn.Module):
    """The linear system itself as a world model (latent = observation, never terminates)."""

    def __init__(self, reward_sign=1.0):
        super().__init__()
        self.reward_sign = reward_sign

    def encode(self, obs):
        return obs.clone()

    def next(self, z, a):
        return z @ A.T + a @ B.T

    def reward(self, z, a):
        return self.reward_sign * linear_reward(z, a)

    def continue_prob(self, z, a):
        return torch.ones(*z.shape[:-1], 1)


def constant(value):
    return lambda obs: torch.full((obs.shape[0], ACT), value)


def test_real_rollout_matches_hand_stepping_and_zeroes_rewards_after_the_end():
    env = LinearEnv(end={1: 2})
    env.set_seed(3)
    first, actions, rewards = real_rollout(env, constant(0.5), 4)
    assert actions.shape == (ENVS, 4, ACT) and rewards.shape == (ENVS, 4)
    env.set_seed(3)
    obs, expected = env.reset()["observation"], []
    torch.testing.assert_close(first, obs)
    for _ in range(4):
        expected.append(linear_reward(obs, torch.full((ENVS, 1), 0.5)).reshape(-1))
        obs = obs @ A.T + 0.5 * B.T
    expected = torch.stack(expected, 1)
    expected[1, 2:] = 0.0  # env 1 terminated at its second step
    torch.testing.assert_close(rewards, expected)


def test_model_replay_follows_the_world_model_with_survival_and_units():
    torch.manual_seed(0)
    wm = PWMWorldModel(5, 1, latent_dim=16, units=(32,), encoder_units=(32,))
    with torch.no_grad():
        for p in wm.parameters():
            p.add_(0.3 * torch.randn_like(p))  # a termination head that is not ~0
    first, actions = torch.randn(4, 5), torch.rand(4, 3, 1) * 2 - 1
    got = model_replay_rewards(wm, first, actions, reward_scale=2.0, reward_loc=-0.5)
    with torch.no_grad():
        z, survival, expected = wm.encode(first), torch.ones(4), []
        for t in range(3):
            a = actions[:, t]
            expected.append((wm.reward(z, a).reshape(-1) * 2.0 - 0.5) * survival)
            survival = survival * (1 - torch.sigmoid(wm.termination_logit(z, a).reshape(-1)))
            z = wm.next(z, a)
    torch.testing.assert_close(got, torch.stack(expected, 1))


@pytest.mark.parametrize(
    ("real", "model", "expected"),
    [
        ([1.0, 2.0, 3.0], [5.0, 6.0, 9.0], 1.0),
        ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], 0.0),
        ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 4.0, 3.0], 5 / 6),
        ([1.0, 2.0], [7.0, 7.0], 0.5),
    ],
)
def test_rank_agreement_counts_concordant_pairs(real, model, expected):
    assert rank_agreement(real, model) == pytest.approx(expected)


def test_rank_agreement_of_one_behaviour_is_nan():
    assert math.isnan(rank_agreement([1.0], [2.0]))


@pytest.mark.parametrize(("sign", "agreement"), [(1.0, 1.0), (-1.0, 0.0)])
def test_probe_of_the_perfect_and_the_reversed_model(sign, agreement):
    behaviours = {"low": constant(-1.0), "zero": constant(0.0), "high": constant(1.0)}
    result = behaviour_probe(PerfectModel(sign), LinearEnv(), behaviours, horizons=[6, 2], seed=4)
    assert [(r["behaviour"], r["horizon"]) for r in result["rows"]] == [
        (b, h) for b in behaviours for h in (2, 6)
    ]
    env = LinearEnv()
    for row in result["rows"]:
        env.set_seed(4)
        _, _, real = real_rollout(env, behaviours[row["behaviour"]], row["horizon"])
        assert row["real"] == pytest.approx(float(real.sum(1).mean()))
        assert row["model"] == pytest.approx(sign * row["real"], abs=1e-5)
        assert row["corr"] == pytest.approx(sign)
    assert result["high_real"] == result["rows"][-1]["real"]
    assert result["rank_agreement"] == agreement
    metrics = scalar_metrics(result, METRIC_PREFIXES["behaviour_probe"])
    assert metrics["diagnostics/probe_rank_agreement"] == agreement
    assert set(metrics) == {
        f"diagnostics/probe_{b}_{kind}" for b in behaviours for kind in ("real", "model")
    } | {"diagnostics/probe_rank_agreement"}


def test_probe_refuses_empty_input():
    with pytest.raises(ValueError, match="horizons >= 1"):
        behaviour_probe(PerfectModel(), LinearEnv(), {"zero": constant(0.0)}, horizons=[0], seed=0)


def test_reference_behaviours_of_a_task():
    policy = TensorDictModule(
        lambda obs: obs[..., :2].tanh(), in_keys=["observation"], out_keys=["action"]
    )
    obs = torch.randn(3, 4)
    gen = torch.Generator().manual_seed(1)
    cartpole = reference_behaviours(policy, "cartpole", 2, generator=gen)
    assert list(cartpole) == ["zero", "random", "policy", "pd"]
    assert torch.equal(cartpole["zero"](obs), torch.zeros(3, 2))
    torch.testing.assert_close(cartpole["policy"](obs), obs[:, :2].tanh())
    uniform = torch.cat([cartpole["random"](obs) for _ in range(200)])
    assert uniform.min() >= -1 and uniform.max() <= 1 and uniform.std() > 0.5
    gen.manual_seed(1)
    torch.testing.assert_close(cartpole["random"](obs), uniform[:3])
    assert list(reference_behaviours(policy, "ant", 8)) == ["zero", "random", "policy", "trot"]
    assert list(reference_behaviours(policy, "anymal", 12)) == ["zero", "random", "policy"]


def test_reference_probe_replays_the_same_random_actions_at_every_call():
    policy = TensorDictModule(
        lambda obs: obs[..., :ACT].tanh(), in_keys=["observation"], out_keys=["action"]
    )
    env, model = LinearEnv(), PerfectModel()
    calls = [reference_probe(model, env, policy, "anymal", horizons=[3], seed=7) for _ in range(2)]
    assert calls[0] == calls[1]
    assert [row["behaviour"] for row in calls[0]["rows"]] == ["zero", "random", "policy"]
    # The same as composing the parts with a generator seeded like the env.
    generator = torch.Generator().manual_seed(7)
    behaviours = reference_behaviours(policy, "anymal", ACT, generator=generator)
    by_hand = behaviour_probe(model, env, behaviours, horizons=[3], seed=7)
    assert calls[0] == by_hand
    other_seed = reference_probe(model, env, policy, "anymal", horizons=[3], seed=8)
    assert other_seed["random_real"] != calls[0]["random_real"]
