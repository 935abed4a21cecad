"""imagination_vs_real and termination_calibration against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict

from torchrl_flowmbpo.diagnostics import (
    imagination_vs_real,
    scalar_metrics,
    termination_calibration,
)
from torchrl_flowmbpo.modules.models import FlowWorldModel, PWMWorldModel

OBS, ACT = 3, 2
A = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.7]])
B = torch.tensor([[0.5, 0.0], [0.0, 0.5], [0.3, -0.3]])
W_OBS, W_ACT = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.3, 0.7])


def true_next(obs, action):
    return obs @ A.T + action @ B.T


def true_reward(obs, action):
    return (obs * W_OBS).sum(-1, keepdim=True) + (action * W_ACT).sum(-1, keepdim=True)


def tiny_wm(kind=PWMWorldModel, **kwargs):
    return kind(OBS, ACT, latent_dim=16, units=(32,), encoder_units=(32,), **kwargs)


def perfect(monkeypatch, wm):
    """The world model replaced by the true linear system (latent = observation)."""
    monkeypatch.setattr(wm, "encode", lambda obs: obs.clone())
    monkeypatch.setattr(wm, "next", true_next)
    monkeypatch.setattr(wm, "reward", true_reward)
    return wm


def linear_slices(batch=6, steps=5, *, reset_at=None, seed=0):
    """Real [B, T] slices of the linear system; ``reset_at = {row: t}`` ends the episode at t
    and starts the next transition from a fresh random observation."""
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch, OBS, generator=gen)
    action = torch.rand(batch, steps, ACT, generator=gen) * 2 - 1
    cols = {"observation": [], ("next", "observation"): [], ("next", "reward"): []}
    done = torch.zeros(batch, steps, 1, dtype=torch.bool)
    for row, t in (reset_at or {}).items():
        done[row, t] = True
    for t in range(steps):
        nxt = true_next(obs, action[:, t])
        cols["observation"].append(obs)
        cols["next", "observation"].append(nxt)
        cols["next", "reward"].append(true_reward(obs, action[:, t]))
        fresh = torch.randn(batch, OBS, generator=gen)
        obs = torch.where(done[:, t], fresh, nxt)
    data = {k: torch.stack(v, 1) for k, v in cols.items()}
    data.update({"action": action, ("next", "done"): done, ("next", "terminated"): done})
    return TensorDict(data, batch_size=[batch, steps])


class TestImaginationVsReal:
    def test_perfect_model_has_correlation_one_and_zero_errors(self, monkeypatch):
        wm = perfect(monkeypatch, tiny_wm())
        out = imagination_vs_real(wm, linear_slices(), horizon=4)
        assert out["reward_corr"] == pytest.approx([1.0] * 4, abs=1e-6)
        assert out["reward_mae"] == pytest.approx([0.0] * 4, abs=1e-6)
        assert out["latent_error"] == pytest.approx([0.0] * 4, abs=1e-10)
        assert out["reward_corr_mean"] == pytest.approx(1.0, abs=1e-6)
        assert out["reward_corr_teacher"] == pytest.approx(1.0, abs=1e-6)
        assert out["latent_error_last"] == pytest.approx(0.0, abs=1e-10)
        assert out["count"] == [6] * 4 and out["num_slices"] == 6

    def test_steps_after_an_episode_end_are_masked(self, monkeypatch):
        # Rows 0 and 1 end at t=1 and t=0: their later transitions start from a reset
        # observation the open-loop model cannot know, so including them would show errors.
        wm = perfect(monkeypatch, tiny_wm())
        slices = linear_slices(reset_at={0: 1, 1: 0})
        out = imagination_vs_real(wm, slices, horizon=4)
        assert out["count"] == [6, 5, 4, 4]
        assert max(out["reward_mae"]) == pytest.approx(0.0, abs=1e-6)
        assert max(out["latent_error"]) == pytest.approx(0.0, abs=1e-10)
        unmasked = imagination_vs_real(wm, slices, horizon=4, done_key=None)
        assert unmasked["count"] == [6] * 4
        assert unmasked["reward_mae"][2] > 1e-3 and unmasked["latent_error"][1] > 1e-3

    def test_constant_reward_model_gives_hand_mae_and_undefined_correlation(self, monkeypatch):
        wm = perfect(monkeypatch, tiny_wm())
        monkeypatch.setattr(wm, "reward", lambda z, a: torch.full((*z.shape[:-1], 1), 0.5))
        slices = linear_slices(batch=4, steps=3)
        real = slices["next", "reward"].squeeze(-1).double()
        out = imagination_vs_real(wm, slices, horizon=3)
        expected_mae = (0.5 - real).abs().mean(0).tolist()
        assert out["reward_mae"] == pytest.approx(expected_mae, abs=1e-12)
        assert out["reward_bias"] == pytest.approx((0.5 - real).mean(0).tolist(), abs=1e-12)
        assert out["reward_mae_mean"] == pytest.approx(sum(expected_mae) / 3, abs=1e-12)
        assert all(math.isnan(c) for c in out["reward_corr"])
        assert math.isnan(out["reward_corr_mean"])

    def test_reward_scale_divides_the_real_reward(self, monkeypatch):
        wm = perfect(monkeypatch, tiny_wm())
        slices = linear_slices()
        slices["next", "reward"] = slices["next", "reward"] * 4.0
        out = imagination_vs_real(wm, slices, horizon=3, reward_scale=4.0)
        assert out["reward_mae_mean"] == pytest.approx(0.0, abs=1e-6)

    def test_latent_error_grows_with_the_hand_drift(self, monkeypatch):
        # Still observations; the model drifts every coordinate by +0.1 per step.
        wm = tiny_wm()
        monkeypatch.setattr(wm, "encode", lambda obs: obs.clone())
        monkeypatch.setattr(wm, "next", lambda z, a: z + 0.1)
        monkeypatch.setattr(wm, "reward", true_reward)
        obs = torch.randn(3, 1, OBS).expand(3, 4, OBS)
        slices = TensorDict(
            {
                "observation": obs,
                ("next", "observation"): obs,
                "action": torch.zeros(3, 4, ACT),
                ("next", "reward"): torch.zeros(3, 4, 1),
            },
            batch_size=[3, 4],
        )
        out = imagination_vs_real(wm, slices, horizon=4)
        assert out["latent_error"] == pytest.approx([0.01 * k**2 for k in (1, 2, 3, 4)], rel=1e-5)

    @pytest.mark.parametrize("kind", [PWMWorldModel, FlowWorldModel])
    @pytest.mark.parametrize("reward_head", ["scalar", "twohot"])
    def test_fresh_model_decodes_zero_so_mae_is_mean_abs_reward(self, kind, reward_head):
        slices = linear_slices(batch=5, steps=4)
        out = imagination_vs_real(tiny_wm(kind, reward_head=reward_head), slices, horizon=4)
        real = slices["next", "reward"].abs().squeeze(-1).double().mean(0)
        assert out["reward_mae"] == pytest.approx(real.tolist(), abs=1e-6)
        assert all(math.isfinite(v) for v in out["latent_error"])

    def test_no_graph_input_untouched_and_plain_floats(self):
        wm = tiny_wm()
        slices = linear_slices()
        before = slices.clone()
        out = imagination_vs_real(wm, slices, horizon=3)
        assert (slices == before).all()
        assert all(type(v) in (float, int, list) for v in out.values())
        assert "diagnostics/reward_corr_last" in scalar_metrics(out)

    def test_rejects_short_slices(self):
        with pytest.raises(ValueError, match="horizon=6"):
            imagination_vs_real(tiny_wm(), linear_slices(steps=5), horizon=6)


def calibration_data(probs, terminated):
    """Transitions whose first observation entry is the termination probability to predict."""
    probs = torch.tensor(probs)
    obs = torch.zeros(len(probs), OBS)
    obs[:, 0] = probs
    return TensorDict(
        {
            "observation": obs,
            "action": torch.zeros(len(probs), ACT),
            ("next", "terminated"): torch.tensor(terminated, dtype=torch.bool).unsqueeze(-1),
        },
        batch_size=[len(probs)],
    )


def probability_model(monkeypatch):
    wm = tiny_wm()
    monkeypatch.setattr(wm, "encode", lambda obs: obs.clone())
    monkeypatch.setattr(wm, "termination_logit", lambda z, a: torch.logit(z[..., :1].double()))
    return wm


class TestTerminationCalibration:
    PROBS = (0.05, 0.05, 0.15, 0.15, 0.85, 0.95)
    TERMINATED = (False, True, False, False, True, True)

    @pytest.mark.parametrize("strategy", ["uniform", "quantile"])
    def test_hand_example(self, monkeypatch, strategy):
        wm = probability_model(monkeypatch)
        data = calibration_data(self.PROBS, self.TERMINATED)
        out = termination_calibration(wm, data, num_bins=2, strategy=strategy)
        assert out["predicted_rate"] == pytest.approx(2.2 / 6)
        assert out["observed_rate"] == pytest.approx(0.5)
        assert out["ratio"] == pytest.approx(2.2 / 3)
        assert out["ratio_is_bound"] == 0.0
        # (0.05² + 0.95² + 0.15² + 0.15² + 0.15² + 0.05²) / 6
        assert out["brier"] == pytest.approx(0.975 / 6)
        # bins (0, 0.5] and (0.5, 1]: means 0.1 and 0.9, frequencies 1/4 and 1, counts 4 and 2
        bins = out["bins"]
        assert bins["mean_predicted"] == pytest.approx([0.1, 0.9])
        assert bins["observed_frequency"] == pytest.approx([0.25, 1.0])
        assert bins["count"] == [4.0, 2.0]
        assert bins["lower"][0] == 0.0 and bins["upper"][-1] == 1.0
        assert out["ece"] == pytest.approx(4 / 6 * 0.15 + 2 / 6 * 0.1)
        assert out["count"] == 6.0

    def test_uniform_bins_drop_empty_bins(self, monkeypatch):
        wm = probability_model(monkeypatch)
        out = termination_calibration(
            wm, calibration_data(self.PROBS, self.TERMINATED), num_bins=10, strategy="uniform"
        )
        assert out["bins"]["lower"] == pytest.approx([0.0, 0.1, 0.8, 0.9])
        assert out["bins"]["count"] == [2.0, 2.0, 1.0, 1.0]

    def test_zero_observed_terminations_give_finite_bound(self, monkeypatch):
        wm = probability_model(monkeypatch)
        out = termination_calibration(wm, calibration_data([0.01] * 4, [False] * 4))
        assert out["observed_rate"] == 0.0 and out["observed_count"] == 0.0
        assert out["ratio"] == pytest.approx(0.04, rel=1e-5)  # Σp, as if one fall had been observed
        assert out["ratio_is_bound"] == 1.0
        assert out["brier"] == pytest.approx(1e-4, rel=1e-5)
        numbers = [v for v in out.values() if isinstance(v, float)]
        numbers += [v for values in out["bins"].values() for v in values]
        assert all(math.isfinite(v) for v in numbers)

    def test_fresh_head_predicts_its_bias(self):
        data = linear_slices(batch=4, steps=3)
        out = termination_calibration(tiny_wm(), data)
        assert out["predicted_rate"] == pytest.approx(torch.sigmoid(torch.tensor(-5.0)).item())
        assert out["count"] == 12.0

    def test_model_without_head_predicts_no_termination(self):
        data = calibration_data([0.3, 0.3], [True, False])
        out = termination_calibration(tiny_wm(termination_head=False), data)
        assert out["predicted_rate"] == 0.0 and out["ratio"] == 0.0
        assert out["brier"] == pytest.approx(0.5)

    def test_bad_strategy(self, monkeypatch):
        with pytest.raises(ValueError, match="strategy"):
            termination_calibration(tiny_wm(), calibration_data([0.1], [False]), strategy="x")
