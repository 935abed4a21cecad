"""critic_vs_returns, exploitation_gap, horizon_return_gap and collect_rollouts, by hand."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from torchrl_flowmbpo.diagnostics import (
    collect_rollouts,
    critic_vs_returns,
    exploitation_gap,
    horizon_return_gap,
    scalar_metrics,
)
from torchrl_flowmbpo.modules import GaussianActor, VCritic
from torchrl_flowmbpo.modules.models import PWMWorldModel

# Return-to-go with reward 1 and γ = 0.5 on a row that ends at t = 3 and runs on to T = 8.
G_ROW = [1.875, 1.75, 1.5, 1.0, 1.875, 1.75, 1.5, 1.0]


def tiny_wm(obs_dim=1, action_dim=1, **kwargs):
    return PWMWorldModel(
        obs_dim, action_dim, latent_dim=16, units=(32,), encoder_units=(32,), **kwargs
    )


def identity_encoder(monkeypatch, wm):
    monkeypatch.setattr(wm, "encode", lambda obs: obs.clone())
    return wm


def value_from_latent(scale=1.0, offset=0.0):
    """A critic whose value is ``scale * latent[..., :1] + offset``."""
    return TensorDictModule(
        lambda z: scale * z[..., :1] + offset, in_keys=["latent"], out_keys=["state_value"]
    )


def hand_rollouts(reward=1.0):
    """Two rows of 8 steps: row 0 terminates at t=3, row 1 is truncated (time limit) at t=3.
    The observation holds the hand return-to-go G_t, so a critic reading it is exact."""
    done = torch.zeros(2, 8, 1, dtype=torch.bool)
    done[:, 3] = True
    terminated = done.clone()
    terminated[1] = False
    return TensorDict(
        {
            "observation": torch.tensor([G_ROW, G_ROW]).unsqueeze(-1),
            ("next", "reward"): torch.full((2, 8, 1), reward),
            ("next", "done"): done,
            ("next", "terminated"): terminated,
        },
        batch_size=[2, 8],
    )


class TestCriticVsReturns:
    def test_hand_return_to_go_with_a_zero_critic(self, monkeypatch):
        wm = identity_encoder(monkeypatch, tiny_wm())
        out = critic_vs_returns(value_from_latent(0.0), wm, hand_rollouts(), gamma=0.5)
        # tol 0.01 keeps only row 0, t = 0..3: its episode terminates inside the window.
        assert out["count"] == 4.0 and out["count_total"] == 16.0
        assert out["return_mean"] == pytest.approx(sum(G_ROW[:4]) / 4)
        assert out["bias"] == pytest.approx(-sum(G_ROW[:4]) / 4)
        assert out["terminal_fraction"] == 1.0
        assert math.isnan(out["corr"])  # a constant critic

    def test_tail_tolerance_admits_long_enough_windows(self, monkeypatch):
        wm = identity_encoder(monkeypatch, tiny_wm())
        out = critic_vs_returns(
            value_from_latent(0.0), wm, hand_rollouts(), gamma=0.5, tail_tolerance=0.1
        )
        # Unobserved tails 0.0625 (4 steps left) are now kept: row 0 t=0..4, row 1 t=0 and 4.
        assert out["count"] == 7.0
        assert out["return_mean"] == pytest.approx((sum(G_ROW[:5]) + 2 * 1.875) / 7)
        assert out["terminal_fraction"] == pytest.approx(4 / 7)

    def test_exact_critic_has_zero_bias_and_unit_correlation(self, monkeypatch):
        wm = identity_encoder(monkeypatch, tiny_wm())
        critic = value_from_latent(1.0)
        out = critic_vs_returns(critic, wm, hand_rollouts(), gamma=0.5, tail_tolerance=0.1)
        assert out["bias"] == pytest.approx(0.0, abs=1e-7)
        assert out["mae"] == pytest.approx(0.0, abs=1e-7)
        assert out["corr"] == pytest.approx(1.0)

    def test_reward_scale_compares_in_normalised_units(self, monkeypatch):
        wm = identity_encoder(monkeypatch, tiny_wm())
        data = hand_rollouts(reward=4.0)
        out = critic_vs_returns(value_from_latent(1.0), wm, data, gamma=0.5, reward_scale=4.0)
        assert out["bias"] == pytest.approx(0.0, abs=1e-7)

    def test_overestimating_critic_has_positive_bias(self, monkeypatch):
        wm = identity_encoder(monkeypatch, tiny_wm())
        out = critic_vs_returns(value_from_latent(1.0, 3.0), wm, hand_rollouts(), gamma=0.5)
        assert out["bias"] == pytest.approx(3.0)
        assert out["corr"] == pytest.approx(1.0)

    def test_no_kept_state_gives_zero_count(self, monkeypatch):
        wm = identity_encoder(monkeypatch, tiny_wm())
        data = hand_rollouts()
        data["next", "terminated"].zero_()
        out = critic_vs_returns(value_from_latent(0.0), wm, data, gamma=0.9)
        assert out["count"] == 0.0 and math.isnan(out["bias"])

    def test_real_vcritic_and_encoder(self):
        wm = tiny_wm(obs_dim=3)
        data = hand_rollouts()
        data["observation"] = torch.randn(2, 8, 3)
        before = data.clone()
        out = critic_vs_returns(VCritic(16, hidden=(32,)), wm, data, gamma=0.5)
        assert (data == before).all()
        assert math.isfinite(out["bias"]) and out["count"] == 4.0
        assert "diagnostics/critic_bias" in scalar_metrics(out, "diagnostics/critic_")


class TestExploitationGap:
    def test_with_bootstrap_the_real_value_is_per_step_over_one_minus_gamma(self):
        out = exploitation_gap(300.0, 1.2, gamma=0.99, reward_scale=2.0)
        assert out["real_return"] == pytest.approx(60.0)  # 1.2 / 2 / (1 - 0.99)
        assert out["gap"] == pytest.approx(240.0)
        assert out["imagined_per_step"] == pytest.approx(6.0)  # 300 * 2 * (1 - 0.99)
        assert out["gap_per_step"] == pytest.approx(4.8)

    def test_h_step_sum_without_bootstrap(self):
        out = exploitation_gap(3.0, 1.0, gamma=0.5, horizon=2)  # W = 1 + 0.5
        assert out["real_return"] == pytest.approx(1.5)
        assert out["gap"] == pytest.approx(1.5)
        assert out["imagined_per_step"] == pytest.approx(2.0)
        assert out["gap_per_step"] == pytest.approx(1.0)

    def test_matching_returns_have_no_gap(self):
        assert exploitation_gap(50.0, 0.5, gamma=0.99)["gap"] == pytest.approx(0.0)

    @pytest.mark.parametrize("kwargs", [{"gamma": 1.0}, {"gamma": 0.9, "horizon": 0}])
    def test_bad_arguments(self, kwargs):
        with pytest.raises(ValueError):
            exploitation_gap(1.0, 1.0, **kwargs)


def deterministic_actor():
    return TensorDictModule(
        lambda z: torch.tanh(z[..., :1] - z[..., 1:2]), in_keys=["latent"], out_keys=["action"]
    )


class TestHorizonReturnGap:
    def test_perfect_model_matches_real_rollouts(self, monkeypatch):
        a = torch.tensor([[0.9, 0.2], [-0.1, 0.8]])
        b = torch.tensor([[0.5], [-0.4]])
        w = torch.tensor([1.0, -0.5])
        wm = identity_encoder(monkeypatch, tiny_wm(obs_dim=2, termination_head=False))
        monkeypatch.setattr(wm, "next", lambda z, act: z @ a.T + act @ b.T)
        monkeypatch.setattr(wm, "reward", lambda z, act: (z * w).sum(-1, keepdim=True) + act)
        policy = deterministic_actor()
        obs = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
        steps = {"observation": [], ("next", "reward"): []}
        for _ in range(4):
            act = policy(TensorDict(latent=obs, batch_size=[6]))["action"]
            steps["observation"].append(obs)
            steps["next", "reward"].append((obs * w).sum(-1, keepdim=True) + act)
            obs = obs @ a.T + act @ b.T
        data = TensorDict({k: torch.stack(v, 1) for k, v in steps.items()}, batch_size=[6, 4])
        data["next", "done"] = torch.zeros(6, 4, 1, dtype=torch.bool)
        data["next", "terminated"] = torch.zeros(6, 4, 1, dtype=torch.bool)
        out = horizon_return_gap(wm, policy, data, horizon=4, gamma=0.9)
        assert out["gap"] == pytest.approx(0.0, abs=1e-6)
        assert out["corr"] == pytest.approx(1.0, abs=1e-6)
        assert out["imagined_survival"] == 1.0 and out["real_survival"] == 1.0
        assert out["count"] == 6.0

    def test_hand_example_with_terminations_and_truncations(self, monkeypatch):
        wm = identity_encoder(monkeypatch, tiny_wm())
        monkeypatch.setattr(wm, "next", lambda z, act: z)
        monkeypatch.setattr(wm, "reward", lambda z, act: torch.ones_like(z[..., :1]))
        monkeypatch.setattr(wm, "continue_prob", lambda z, act: torch.full_like(z[..., :1], 0.5))
        done = torch.zeros(5, 3, 1, dtype=torch.bool)
        terminated = torch.zeros(5, 3, 1, dtype=torch.bool)
        terminated[1, 1] = terminated[4, 0] = True  # falls at t=1 and t=0
        done[2, 0] = done[3, 2] = True  # time limits at t=0 (row dropped) and at the last step
        data = TensorDict(
            {
                "observation": torch.zeros(5, 3, 1),
                ("next", "reward"): torch.ones(5, 3, 1),
                ("next", "done"): done | terminated,
                ("next", "terminated"): terminated,
            },
            batch_size=[5, 3],
        )
        out = horizon_return_gap(wm, deterministic_actor(), data, horizon=3, gamma=0.5)
        # imagined: 1 + 0.5·0.5 + 0.25·0.25; real rows 0, 1, 3, 4: 1.75, 1.5, 1.75, 1.0
        assert out["imagined_return"] == pytest.approx(1.3125)
        assert out["real_return"] == pytest.approx(1.5)
        assert out["gap"] == pytest.approx(-0.1875)
        assert out["imagined_survival"] == pytest.approx(0.125)
        assert out["real_survival"] == pytest.approx(0.5)
        assert out["count"] == 4.0
        assert math.isnan(out["corr"])

    def test_reward_scale_and_real_actor(self):
        wm = tiny_wm(obs_dim=3, action_dim=2)  # fresh: r̂ = 0
        data = TensorDict(
            {
                "observation": torch.randn(4, 5, 3),
                ("next", "reward"): torch.full((4, 5, 1), 2.0),
                ("next", "done"): torch.zeros(4, 5, 1, dtype=torch.bool),
                ("next", "terminated"): torch.zeros(4, 5, 1, dtype=torch.bool),
            },
            batch_size=[4, 5],
        )
        actor = GaussianActor(16, 2, hidden=(32,))
        out = horizon_return_gap(wm, actor, data, horizon=2, gamma=0.5, reward_scale=2.0)
        assert out["real_return"] == pytest.approx(1.5)
        assert out["imagined_return"] == 0.0 and out["gap"] == pytest.approx(-1.5)


class CountingEnv(EnvBase):
    """Two envs counting steps since reset; env 0 falls (terminates) at 3, env 1 hits a time
    limit (truncates) at 5. Reward 1 per step."""

    def __init__(self) -> None:
        super().__init__(batch_size=torch.Size([2]))
        self.observation_spec = Composite(observation=Unbounded((2, 1)), shape=(2,))
        self.action_spec = Bounded(-1.0, 1.0, (2, 1))
        self.reward_spec = Unbounded((2, 1))
        flag = Categorical(2, (2, 1), dtype=torch.bool)
        self.full_done_spec = Composite(
            done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=(2,)
        )
        self.count = torch.zeros(2)
        self.fall_at = torch.tensor([3.0, math.inf])

    def _flags(self, **values):
        zeros = torch.zeros(2, 1, dtype=torch.bool)
        return {k: values.get(k, zeros) for k in ("done", "terminated", "truncated")}

    def _reset(self, tensordict: TensorDictBase | None) -> TensorDict:
        reset = None if tensordict is None else tensordict.get("_reset", None)
        if reset is None:
            self.count.zero_()
        else:
            self.count[reset.reshape(-1)] = 0.0
        return TensorDict(
            observation=self.count.unsqueeze(-1).clone(), **self._flags(), batch_size=[2]
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDict:
        self.count += 1
        terminated = (self.count >= self.fall_at).unsqueeze(-1)
        truncated = (self.count >= 5).unsqueeze(-1) & ~terminated
        return TensorDict(
            observation=self.count.unsqueeze(-1).clone(),
            reward=torch.ones(2, 1),
            **self._flags(done=terminated | truncated, terminated=terminated, truncated=truncated),
            batch_size=[2],
        )

    def _set_seed(self, seed: int | None) -> None:
        pass


def test_collect_rollouts_feeds_critic_vs_returns(monkeypatch):
    policy = TensorDictModule(
        lambda obs: torch.zeros_like(obs), in_keys=["observation"], out_keys=["action"]
    )
    data = collect_rollouts(CountingEnv(), policy, 8)
    assert data.shape == (2, 8)
    assert data["observation"].squeeze(-1).tolist() == [
        [0, 1, 2, 0, 1, 2, 0, 1],
        [0, 1, 2, 3, 4, 0, 1, 2],
    ]
    wm = identity_encoder(monkeypatch, tiny_wm())
    out = critic_vs_returns(value_from_latent(0.0, 1.0), wm, data, gamma=0.5, tail_tolerance=0.2)
    # Kept: env 0 t=0..5 (two falls, G = 1.75, 1.5, 1); env 1 t=0, 1, 2 (tails 1/32, 1/16,
    # 1/8 before its time limit) and t=5 (1/8 before the window end).
    kept = [1.75, 1.5, 1.0] * 2 + [1.9375, 1.875, 1.75, 1.75]
    assert out["count"] == 10.0
    assert out["return_mean"] == pytest.approx(sum(kept) / 10)
    assert out["bias"] == pytest.approx(1.0 - sum(kept) / 10)
    assert out["terminal_fraction"] == pytest.approx(0.6)
