"""action_gradient_accuracy and its parts on a linear "true system" with known gradients."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from torchrl_flowmbpo.diagnostics import (
    METRIC_PREFIXES,
    action_gradient_accuracy,
    finite_difference_gradient,
    make_real_return,
    model_action_gradient,
    pearson,
    scalar_metrics,
    smoothed_gradient,
)
from torchrl_flowmbpo.modules.models import PWMWorldModel

N, H, OBS, ACT, GAMMA = 32, 5, 3, 2, 0.9
A = torch.tensor([[0.9, 0.2, 0.0], [-0.1, 0.8, 0.3], [0.0, -0.2, 0.95]])
B = torch.tensor([[0.5, 0.0], [0.2, -0.4], [0.0, 0.6]])
C = torch.tensor([1.0, -0.5, 0.3])


class LinearSystem(nn.Module):
    """World-model-like toy: latent = observation, ``z' = A z + B a``,
    ``r = c·z − q |z|² − k |a|²``. Its parameters require grad, as a trained model's do."""

    def __init__(self, a=A, b=B, c=C, q=1.0, k=0.1):
        super().__init__()
        self.A, self.B, self.c = nn.Parameter(a.clone()), nn.Parameter(b.clone()), nn.Parameter(c)
        self.q, self.k = q, k

    def encode(self, obs):
        return obs

    def next(self, z, a):
        return z @ self.A.T + a @ self.B.T

    def reward(self, z, a):
        r = z @ self.c - self.q * z.square().sum(-1) - self.k * a.square().sum(-1)
        return r.unsqueeze(-1)


def true_return(system: LinearSystem, scale: float = 1.0):
    """The same maths as a ``real_return`` callable, in float64, times ``scale`` (raw units)."""
    a, b, c = (p.detach().double() for p in (system.A, system.B, system.c))
    sys64 = LinearSystem(a, b, c, system.q, system.k)

    @torch.no_grad()
    def real_return(obs, actions):
        z, total = sys64.encode(obs.double()), 0.0
        for t in range(actions.shape[1]):
            a = actions[:, t].double()
            total = total + GAMMA**t * sys64.reward(z, a).squeeze(-1)
            z = sys64.next(z, a)
        return total * scale

    return real_return


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(N, OBS, generator=gen)
    actions = torch.rand(N, H, ACT, generator=gen) - 0.5
    return obs, actions


def run(model, real, data, **kwargs):
    return action_gradient_accuracy(model, *data, real, gamma=GAMMA, **kwargs)


def test_perfect_model_matches_in_value_and_gradient(data):
    system = LinearSystem()
    out = run(system, true_return(system), data)
    # The return is quadratic in the actions: central differences are exact up to round-off.
    assert out["grad_cos_mean"] > 0.999 and out["grad_cos_median"] > 0.999
    assert min(out["grad_cos_per_step"]) > 0.999 and len(out["grad_cos_per_step"]) == H
    assert out["value_corr"] > 0.999
    assert out["grad_norm_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert out["first_action_sign_agreement"] == 1.0
    assert out["model_return_mean"] == pytest.approx(out["real_return_mean"], rel=1e-5)
    assert out["count"] == N


def test_reward_scale_takes_the_model_to_raw_units(data):
    # A model of rewards divided by 4 (normalised) against raw rewards: scale 4 restores them.
    system = LinearSystem()
    out = run(system, true_return(system, scale=4.0), data, reward_scale=4.0)
    assert out["grad_norm_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert out["model_return_mean"] == pytest.approx(out["real_return_mean"], rel=1e-5)
    unscaled = run(system, true_return(system, scale=4.0), data)
    assert unscaled["grad_norm_ratio"] == pytest.approx(0.25, abs=1e-3)


def test_negated_input_matrix_reverses_every_step_but_the_last(data):
    # Linear reward in z: a_t reaches r_{t+1..} only through B, so negating B negates that part
    # of the gradient; the last action reaches only its own reward through the -k|a|² term.
    real, model = LinearSystem(q=0.0, k=0.05), LinearSystem(b=-B, q=0.0, k=0.05)
    out = run(model, true_return(real), data)
    per_step = out["grad_cos_per_step"]
    assert max(per_step[:-1]) < -0.95
    assert per_step[-1] > 0.999
    assert out["grad_cos_mean"] < -0.8
    assert out["first_action_sign_agreement"] < 0.05
    # ... while the values still look good: what the diagnostic is for.
    assert out["value_corr"] > 0.9


def test_hand_computed_one_step_case():
    # Model reward (1, 0)·a in normalised units with scale 2 and loc 0.5: g_m = (2, 0).
    # Real return (1, 1)·a: g = (1, 1). cos = 2 / (2 √2), norm ratio 2 / √2, the second action
    # dim has sign 0 vs +: agreement 1/2.
    model = LinearSystem(c=torch.zeros(OBS), q=0.0, k=0.0)
    model.reward = lambda z, a: a[..., :1]
    obs = torch.zeros(4, OBS)
    actions = torch.tensor([[[0.1, 0.2]], [[-0.3, 0.4]], [[0.5, -0.5]], [[1.0, -1.0]]])
    real = lambda o, a: a.sum((1, 2))  # noqa: E731
    out = action_gradient_accuracy(
        model, obs, actions, real, gamma=GAMMA, reward_scale=2.0, reward_loc=0.5
    )
    assert out["grad_cos_mean"] == pytest.approx(1 / math.sqrt(2))
    assert out["grad_cos_per_step"] == pytest.approx([1 / math.sqrt(2)])
    assert out["grad_norm_ratio"] == pytest.approx(math.sqrt(2))
    assert out["first_action_sign_agreement"] == 0.5
    model_ret = 2 * actions[:, 0, 0] + 0.5
    assert out["model_return_mean"] == pytest.approx(float(model_ret.mean()))
    assert out["real_return_mean"] == pytest.approx(float(actions.sum((1, 2)).mean()))
    assert out["value_corr"] == pytest.approx(pearson(model_ret, actions.sum((1, 2))))


def test_model_gradient_in_closed_form():
    # One step, r̂ = -(z + a)², z = o: ∂R/∂a = -2 (o + a), times the reward scale.
    model = LinearSystem(c=torch.zeros(OBS), q=0.0, k=0.0)
    model.reward = lambda z, a: -(z[..., :ACT] + a).square().sum(-1, keepdim=True)
    obs, actions = torch.randn(6, OBS), torch.rand(6, 1, ACT) - 0.5
    ret, grad = model_action_gradient(model, obs, actions, gamma=GAMMA, reward_scale=3.0)
    expected = -2 * 3.0 * (obs[:, :ACT] + actions[:, 0]).double()
    torch.testing.assert_close(grad[:, 0], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        ret, -3.0 * (obs[:, :ACT] + actions[:, 0]).square().sum(-1).double(), rtol=1e-5, atol=0
    )


def test_finite_differences_at_the_bounds_divide_by_the_actual_step():
    # Linear in the actions: every clamped difference is exact. Past a bound the env would clip,
    # so an unclamped ±eps step there would give half the slope.
    slope = torch.tensor([3.0, -2.0], dtype=torch.float64)
    real = lambda o, a: (a.double() * slope).sum((1, 2))  # noqa: E731
    actions = torch.tensor([[[1.0, -1.0], [0.98, -0.97]], [[0.0, 0.5], [-1.0, 1.0]]])
    ret, grad = finite_difference_gradient(real, torch.zeros(2, 1), actions, eps=0.05)
    torch.testing.assert_close(grad, slope.expand(2, 2, 2))
    torch.testing.assert_close(ret, real(None, actions))
    # Curved: one-sided at the bound, error eps · |f''| / 2 = 0.05 for -(a - 0.3)² at a = 1.
    quad = lambda o, a: -(a.double() - 0.3).square().sum((1, 2))  # noqa: E731
    _, grad = finite_difference_gradient(quad, torch.zeros(1, 1), torch.tensor([[[1.0], [0.2]]]))
    assert grad.flatten().tolist() == pytest.approx([-1.35, 0.2])


def test_inputs_are_checked():
    real = lambda o, a: a.sum((1, 2))  # noqa: E731
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        finite_difference_gradient(real, torch.zeros(1, 1), torch.full((1, 2, 1), 1.5))
    with pytest.raises(ValueError, match="eps"):
        finite_difference_gradient(real, torch.zeros(1, 1), torch.zeros(1, 2, 1), eps=0.0)
    with pytest.raises(ValueError, match=r"\[N, H, A\]"):
        model_action_gradient(LinearSystem(), torch.zeros(2, OBS), torch.zeros(2, ACT), gamma=0.9)


@pytest.mark.parametrize("no_grad", [False, True])
def test_world_model_parameters_get_no_gradient(data, no_grad):
    wm = PWMWorldModel(OBS, ACT, latent_dim=16, units=(32,), encoder_units=(32,))
    nn.init.normal_(wm.reward_head[-1].weight)  # a fresh head ignores its input
    actions = data[1]
    before = actions.clone()
    with torch.set_grad_enabled(not no_grad):
        out = run(wm, true_return(LinearSystem()), data)
    assert all(p.grad is None for p in wm.parameters())
    assert all(p.requires_grad for p in wm.parameters())
    assert torch.equal(actions, before) and not actions.requires_grad
    assert math.isfinite(out["grad_cos_mean"]) and out["grad_norm_ratio"] > 0
    system = LinearSystem()
    run(system, true_return(system), data)
    assert all(p.grad is None for p in system.parameters())


def test_a_model_that_ignores_the_actions_has_undefined_cosines(data):
    wm = PWMWorldModel(OBS, ACT, latent_dim=16, units=(32,), encoder_units=(32,))
    out = run(wm, true_return(LinearSystem()), data)  # zero-initialised reward head
    assert out["grad_norm_ratio"] == 0.0
    assert math.isnan(out["grad_cos_mean"]) and math.isnan(out["grad_cos_median"])
    assert all(math.isnan(c) for c in out["grad_cos_per_step"])
    assert math.isnan(out["value_corr"])  # a constant model return


def test_reference_eps_measures_how_well_defined_the_real_gradient_is(data):
    system = LinearSystem()
    smooth = true_return(system)
    out = run(system, smooth, data, reference_eps=0.01)
    # A quadratic return: both steps give the exact gradient.
    assert out["real_self_cos_mean"] > 0.999 and out["real_self_cos_median"] > 0.999
    assert "real_self_cos_mean" not in run(system, smooth, data)

    def rugged(obs, actions):
        """The smooth return plus a ripple whose slope flips within a step of 0.01."""
        return smooth(obs, actions) + 0.05 * torch.sin(400.0 * actions.double()).sum((1, 2))

    out = run(system, rugged, data, reference_eps=0.01)
    assert out["real_self_cos_mean"] < 0.3  # measured 0.09: the two steps disagree
    # The step of 0.05 averages the ripple out: the smooth model still matches it (0.88).
    assert 0.8 < out["grad_cos_mean"] < 0.95


def test_scalar_metrics_names(data):
    system = LinearSystem()
    out = run(system, true_return(system), data)
    names = scalar_metrics(out, METRIC_PREFIXES["action_gradient_accuracy"])
    assert "diagnostics/gradient_grad_cos_mean" in names
    assert "diagnostics/gradient_grad_cos_per_step" not in names  # lists are left out
    assert "diagnostics/gradient_grad_norm_ratio_per_step" not in names
    assert len(names) == len(out) - 2


class LinearEnv(EnvBase):
    """The LinearSystem as a batched env with a state setter; terminates when z_0 > 1."""

    def __init__(self, system: LinearSystem, num_envs: int):
        super().__init__(batch_size=torch.Size([num_envs]))
        self.system, self.z = system, torch.zeros(num_envs, OBS)
        self.observation_spec = Composite(observation=Unbounded((num_envs, OBS)), shape=(num_envs,))
        self.action_spec = Bounded(-1.0, 1.0, (num_envs, ACT))
        self.reward_spec = Unbounded((num_envs, 1))
        flag = Categorical(2, (num_envs, 1), dtype=torch.bool)
        self.done_spec = Composite(done=flag, terminated=flag.clone(), shape=(num_envs,))

    def set_state_from_observation(self, obs: torch.Tensor) -> TensorDictBase:
        self.z = obs.clone()
        return self._output(torch.zeros(self.batch_size[0], 1, dtype=torch.bool))

    def _output(self, done: torch.Tensor) -> TensorDict:
        return TensorDict(
            {"observation": self.z.clone(), "done": done, "terminated": done.clone()},
            batch_size=self.batch_size,
        )

    @torch.no_grad()
    def _step(self, td: TensorDictBase) -> TensorDictBase:
        action = td["action"]
        reward = self.system.reward(self.z, action)
        self.z = self.system.next(self.z, action)
        return self._output(self.z[:, :1] > 1.0).set("reward", reward)

    def _reset(self, td: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        return self.set_state_from_observation(torch.zeros(self.batch_size[0], OBS))

    def _set_seed(self, seed: int | None) -> None:
        pass


def test_make_real_return_steps_the_env_and_stops_at_done(data):
    system = LinearSystem()
    obs, actions = data
    obs = obs * 0.3  # no termination within the horizon
    real = make_real_return(LinearEnv(system, N), gamma=GAMMA)
    # The env steps in float32.
    close = lambda x, y: torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)  # noqa: E731
    close(real(obs, actions), true_return(system)(obs, actions))
    # Starting past the threshold: terminated after the first step, only r_0 counts.
    obs[:, 0] = 3.0
    first = true_return(system)(obs, actions[:, :1])
    close(real(obs, actions), first)
    with pytest.raises(ValueError, match="batch size"):
        real(obs[:4], actions[:4])
    with pytest.raises(TypeError, match="set_state_from_observation"):
        make_real_return(object(), gamma=GAMMA)


def test_smoothed_gradient_of_a_sine_is_damped_by_the_gaussian():
    # E[sin(k (a + σε))] = sin(k a) exp(-k²σ²/2): its slope is k cos(k a) exp(-k²σ²/2), while
    # central differences of step 0.01 give the undamped k cos(k a).
    k, sigma = 5.0, 0.2
    real = lambda o, a: torch.sin(k * a).sum((1, 2))  # noqa: E731
    actions = torch.tensor([[[0.1, -0.3]], [[0.25, 0.0]]])
    gen = torch.Generator().manual_seed(0)
    ret, grad = smoothed_gradient(
        real, torch.zeros(2, 1), actions, sigma=sigma, samples=20000, generator=gen
    )
    damped = k * torch.cos(k * actions.double()) * math.exp(-((k * sigma) ** 2) / 2)
    torch.testing.assert_close(grad, damped, atol=0.06, rtol=0)
    assert ret.tolist() == pytest.approx(torch.sin(k * actions).sum((1, 2)).tolist())
    _, sharp = finite_difference_gradient(real, torch.zeros(2, 1), actions, eps=0.01)
    torch.testing.assert_close(sharp, k * torch.cos(k * actions.double()), atol=5e-3, rtol=0)


def test_smoothed_accuracy_of_a_perfect_linear_model(data):
    # A linear-quadratic system smoothed by the same noise on both sides: the model's pathwise
    # mean gradient and the real antithetic estimate agree up to the estimator's noise, which
    # the split-half cosine reports (H·A = 10 dims, 64 pairs per half: ~1 / (1 + 10 / 64)).
    system = LinearSystem(q=0.0)
    gen = torch.Generator().manual_seed(1)
    out = run(
        system, true_return(system), data, smoothing=0.1, smoothing_samples=256, generator=gen
    )
    assert out["grad_cos_mean"] > 0.9 and out["value_corr"] > 0.999
    assert 0.75 < out["real_self_cos_mean"] < 0.99
    assert out["grad_norm_ratio"] == pytest.approx(1.0, abs=0.1)
    # The model's zeroth-order estimate from its returns at the same pairs: a perfect model's
    # first half is the real first half, so it meets its ceiling, the real halves' agreement.
    assert out["model_zeroth_cos_mean"] == pytest.approx(out["real_self_cos_mean"], abs=1e-4)
    assert out["model_zeroth_cos_median"] == pytest.approx(out["real_self_cos_median"], abs=1e-4)
    assert out["model_zeroth_norm_ratio"] == pytest.approx(1.0, abs=1e-4)
    # A reversed input matrix is still seen as reversed through the smoothing, both ways.
    reversed_b = LinearSystem(b=-B, q=0.0)
    out = run(
        reversed_b, true_return(system), data, smoothing=0.1, smoothing_samples=256, generator=gen
    )
    assert out["grad_cos_mean"] < -0.5
    assert out["model_zeroth_cos_mean"] < -0.5 < 0.5 < out["real_self_cos_mean"]


def test_smoothing_clamps_at_the_bounds_and_refuses_bad_settings():
    real = lambda o, a: a.sum((1, 2))  # noqa: E731
    at_bound = torch.ones(1, 2, 1)
    gen = torch.Generator().manual_seed(0)
    _, grad = smoothed_gradient(
        real, torch.zeros(1, 1), at_bound, sigma=0.3, samples=512, generator=gen
    )
    # At the bound only the inward half of each pair moves: R(a+) - R(a-) = σ Σ ε instead of
    # 2σ Σ ε, so the estimate is half the slope (1) in expectation.
    torch.testing.assert_close(grad, torch.full_like(grad, 0.5), atol=0.1, rtol=0)
    with pytest.raises(ValueError, match=r"need sigma > 0 and samples >= 2, got 0\.0 and 8"):
        smoothed_gradient(real, torch.zeros(1, 1), at_bound, sigma=0.0, samples=8)
    with pytest.raises(ValueError, match=r"got 0\.1 and 1\."):
        smoothed_gradient(real, torch.zeros(1, 1), at_bound, sigma=0.1, samples=1)
