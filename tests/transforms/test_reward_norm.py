"""Tests for torchrl_flowmbpo.transforms: RunningMeanStd and RewardNormalization."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Composite, LazyTensorStorage, TensorDictReplayBuffer, Unbounded
from torchrl.envs import EnvBase, TransformedEnv
from torchrl.envs.utils import check_env_specs

from torchrl_flowmbpo.transforms import REWARD_NORM_MODES, RewardNormalization, RunningMeanStd

INIT_COUNT = 1e-4
EPS = 1e-5


def pooled_moments(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean and population variance of the data pooled with the prior (count 1e-4, mean 0, var 1).

    Written from the definition, not from Chan's update: the pooled sum of squares is the data's
    sum of squares about its mean, plus the prior's (count * var), plus the between-groups term.
    """
    n = data.shape[0]
    total = n + INIT_COUNT
    mean, var = data.mean(axis=0), data.var(axis=0)
    pooled_mean = n * mean / total
    pooled_var = (INIT_COUNT * 1.0 + n * var + mean**2 * INIT_COUNT * n / total) / total
    return pooled_mean, pooled_var, total


def reward_batch(rewards: torch.Tensor) -> TensorDict:
    """A transition batch holding ``("next", "reward")`` of shape ``[N, 1]``."""
    rewards = rewards.reshape(-1, 1)
    return TensorDict({"next": {"reward": rewards}}, batch_size=rewards.shape[:1])


def fitted(mode: str, rewards: torch.Tensor, **kwargs) -> RewardNormalization:
    transform = RewardNormalization(mode, **kwargs)
    transform.update(rewards)
    return transform


class RandomRewardEnv(EnvBase):
    """Batch of 4 envs: 3-dim random observation, 2-dim action, random reward, never done."""

    def __init__(self, num_envs: int = 4) -> None:
        super().__init__(batch_size=torch.Size([num_envs]))
        self.observation_spec = Composite(observation=Unbounded((num_envs, 3)), shape=(num_envs,))
        self.action_spec = Bounded(-1.0, 1.0, (num_envs, 2))
        self.reward_spec = Unbounded((num_envs, 1))
        self.generator = torch.Generator().manual_seed(0)

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*self.batch_size, *shape, generator=self.generator)

    def _reset(self, tensordict: TensorDictBase | None) -> TensorDict:
        return TensorDict(
            observation=self._randn(3),
            done=torch.zeros(*self.batch_size, 1, dtype=torch.bool),
            terminated=torch.zeros(*self.batch_size, 1, dtype=torch.bool),
            batch_size=self.batch_size,
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDict:
        return TensorDict(
            observation=self._randn(3),
            reward=2.0 + 3.0 * self._randn(1),
            done=torch.zeros(*self.batch_size, 1, dtype=torch.bool),
            terminated=torch.zeros(*self.batch_size, 1, dtype=torch.bool),
            batch_size=self.batch_size,
        )

    def _set_seed(self, seed: int | None) -> None:
        self.generator.manual_seed(seed if seed is not None else 0)


class TestRunningMeanStd:
    def test_matches_pooled_numpy_moments(self):
        generator = torch.Generator().manual_seed(0)
        batches = [
            3.0 + 2.0 * torch.randn(7, generator=generator),
            -1.0 + 0.5 * torch.randn(3, 5, generator=generator),
            10.0 * torch.rand(2, 2, 4, generator=generator),
        ]
        rms = RunningMeanStd()
        for batch in batches:
            rms.update(batch)
        data = np.concatenate([b.reshape(-1).double().numpy() for b in batches])
        mean, var, count = pooled_moments(data)
        assert rms.count.item() == pytest.approx(count, abs=1e-9)
        np.testing.assert_allclose(rms.mean.numpy(), mean, rtol=0, atol=1e-6)
        np.testing.assert_allclose(rms.var.numpy(), var, rtol=0, atol=1e-6)
        # The 1e-4 prior is why the plain numpy moments differ, by O(1e-4 / n) here.
        assert 1e-7 < abs(rms.mean.item() - data.mean()) < 1e-4
        assert 1e-7 < abs(rms.var.item() - data.var()) < 1e-4

    def test_feature_shape(self):
        generator = torch.Generator().manual_seed(1)
        batches = [
            torch.randn(4, 3, generator=generator),
            torch.randn(2, 5, 3, generator=generator),
        ]
        rms = RunningMeanStd(shape=(3,))
        for batch in batches:
            rms.update(batch)
        data = np.concatenate([b.reshape(-1, 3).double().numpy() for b in batches])
        mean, var, _ = pooled_moments(data)
        np.testing.assert_allclose(rms.mean.numpy(), mean, rtol=0, atol=1e-6)
        np.testing.assert_allclose(rms.var.numpy(), var, rtol=0, atol=1e-6)
        with pytest.raises(ValueError, match=r"trailing dims are \(3,\)"):
            rms.update(torch.randn(4, 2))

    def test_update_detaches_and_normalize_is_differentiable(self):
        rms = RunningMeanStd()
        x = torch.tensor([1.0, 2.0, 5.0], requires_grad=True)
        rms.update(x)
        assert not any(b.requires_grad for b in rms.buffers())
        rms.update(torch.empty(0))  # an empty batch is a no-op
        assert rms.count.item() == pytest.approx(3 + INIT_COUNT)
        rms.normalize(x, center=False).sum().backward()
        expected_grad = 1.0 / torch.sqrt(rms.var + EPS)
        torch.testing.assert_close(x.grad, expected_grad.float().expand(3), rtol=0, atol=0)


class TestRewardNormalization:
    rewards = torch.tensor([-3.0, -0.5, 0.0, 0.25, 1.0, 2.0, 4.0, 7.5])

    def test_scale_divides_by_sqrt_var_plus_eps(self):
        transform = fitted("scale", self.rewards)
        probe = torch.tensor([-1000.0, -2.0, 0.0, 3.0, 1000.0])
        out = transform(reward_batch(probe))["next", "reward"].squeeze(-1)
        std = torch.sqrt(transform.stats.var + EPS).float()
        assert torch.equal(out, probe / std)
        assert torch.equal(torch.sign(out), torch.sign(probe))
        assert out[2].item() == 0.0
        assert out[-1].item() > 100.0  # no clip unless asked
        clipped = fitted("scale", self.rewards, clip=2.0)(reward_batch(probe))["next", "reward"]
        assert torch.equal(clipped.squeeze(-1), (probe / std).clamp(-2.0, 2.0))
        assert clipped.squeeze(-1)[[0, -1]].tolist() == [-2.0, 2.0]

    def test_standardize_formula_and_default_clip(self):
        transform = fitted("standardize", self.rewards)
        assert transform.clip == 5.0
        mean, var = transform.stats.mean.item(), transform.stats.var.item()
        std = (var + EPS) ** 0.5
        probe = torch.tensor([mean - 10 * std, -2.0, mean, 3.0, mean + 7 * std])
        out = transform(reward_batch(probe))["next", "reward"].squeeze(-1)
        expected = ((probe.double() - mean) / std).clamp(-5, 5)
        torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-6)
        assert out[0].item() == -5.0
        assert out[-1].item() == 5.0
        assert abs(out[2].item()) < 1e-6

    def test_none_is_identity(self):
        transform = fitted("none", self.rewards)
        probe = reward_batch(torch.tensor([-7.0, 0.0, 123.0]))
        expected = probe["next", "reward"].clone()
        assert torch.equal(transform(probe)["next", "reward"], expected)
        with pytest.raises(ValueError, match="RewardClipping"):
            RewardNormalization("none", clip=1.0)

    def test_unknown_mode_error_lists_modes(self):
        with pytest.raises(ValueError) as info:
            RewardNormalization("whiten")
        message = str(info.value)
        assert "'whiten'" in message
        for mode in REWARD_NORM_MODES:
            assert repr(mode) in message

    def test_only_update_changes_statistics(self):
        transform = RewardNormalization("standardize", out_keys=[("next", "reward_norm")])
        transform.update_from(reward_batch(self.rewards))
        before = {k: v.clone() for k, v in transform.state_dict().items()}
        batch = reward_batch(self.rewards)
        for _ in range(3):
            transform(batch)
        after_forward = transform.state_dict()
        assert all(torch.equal(before[k], after_forward[k]) for k in before)
        assert torch.equal(batch["next", "reward"].squeeze(-1), self.rewards)  # raw kept
        transform.freeze().update(torch.full((5,), 100.0))
        assert torch.equal(transform.stats.count, before["stats.count"])
        transform.unfreeze().update(torch.full((5,), 100.0))
        assert transform.stats.count.item() == pytest.approx(8 + 5 + INIT_COUNT)

    def test_state_dict_round_trip(self):
        transform = fitted("standardize", self.rewards)
        buffer = io.BytesIO()
        torch.save(transform.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        assert set(state) == {"stats.mean", "stats.var", "stats.count"}
        restored = RewardNormalization("standardize")
        restored.load_state_dict(state)
        for name, value in transform.state_dict().items():
            assert restored.state_dict()[name].dtype == torch.float64
            torch.testing.assert_close(restored.state_dict()[name], value, rtol=0, atol=0)
        probe = reward_batch(torch.linspace(-5, 5, 11))
        torch.testing.assert_close(
            restored(probe.clone())["next", "reward"],
            transform(probe.clone())["next", "reward"],
            rtol=0,
            atol=0,
        )

    def test_replay_buffer_normalises_samples_and_keeps_storage_raw(self):
        transform = RewardNormalization("scale")  # in place on the sampled copy
        rb = TensorDictReplayBuffer(
            storage=LazyTensorStorage(64), transform=transform, batch_size=16
        )
        raw = 1.0 + 2.0 * torch.randn(40, generator=torch.Generator().manual_seed(2))
        collected = reward_batch(raw)
        rb.extend(collected)
        transform.update_from(collected)  # newly collected frames, once
        stats = {k: v.clone() for k, v in transform.state_dict().items()}
        for _ in range(3):
            sample = rb.sample()
            std = transform.scale.float()
            assert torch.equal(sample["next", "reward"].squeeze(-1), raw[sample["index"]] / std)
        assert all(torch.equal(stats[k], v) for k, v in transform.state_dict().items())
        assert torch.equal(rb.storage[:40]["next", "reward"].squeeze(-1), raw)

    @pytest.mark.parametrize("out_key", [("next", "reward"), ("next", "reward_norm")])
    def test_transformed_env(self, out_key):
        transform = RewardNormalization("scale", out_keys=[out_key])
        env = TransformedEnv(RandomRewardEnv(), transform)
        check_env_specs(env, seed=0)
        assert env.full_reward_spec[out_key[1:]].shape == (4, 1)
        transform.update(torch.tensor([-1.0, 3.0, 5.0]))
        stats = {k: v.clone() for k, v in transform.state_dict().items()}
        rollout = env.rollout(5)
        assert rollout.batch_size == (4, 5)
        assert all(torch.equal(stats[k], v) for k, v in transform.state_dict().items())
        if out_key == ("next", "reward_norm"):
            raw = rollout["next", "reward"]
            assert torch.equal(rollout["next", "reward_norm"], raw / transform.scale.float())
            transform.update_from(rollout)
            assert transform.stats.count.item() == pytest.approx(3 + 20 + INIT_COUNT)


def test_standardize_can_reward_early_termination():
    """Pitfall: with a positive per-step reward, subtracting the mean can favour dying early.

    Statistics: mean 1.2, std 0.5 (Ant: standing earns about 1.2 per step). A policy earning 0.9
    per step (positive, but below the mean) either terminates after 3 steps or survives 10.
    Raw returns 2.7 < 9.0; standardised -1.8 > -6.0 (ending early looks better); scaled
    5.4 < 18.0 (the raw ordering is kept).
    """
    stats_data = torch.tensor([0.7, 1.7]).repeat(5000)  # mean 1.2, population variance 0.25
    per_step = 0.9
    short, long = torch.full((3,), per_step), torch.full((10,), per_step)
    returns = {}
    for mode in ("none", "scale", "standardize"):
        transform = fitted(mode, stats_data)
        returns[mode] = tuple(
            transform(reward_batch(episode))["next", "reward"].sum().item()
            for episode in (short, long)
        )
    assert returns["none"] == pytest.approx((2.7, 9.0))
    assert returns["scale"] == pytest.approx((5.4, 18.0), rel=1e-3)
    assert returns["standardize"] == pytest.approx((-1.8, -6.0), rel=1e-3)
    assert returns["none"][0] < returns["none"][1]
    assert returns["scale"][0] < returns["scale"][1]
    assert returns["standardize"][0] > returns["standardize"][1]
