"""First-order gradient accuracy: the world model's d(return)/d(actions) against the real one.

PWM's actor follows the gradient of the imagined return through the world model. A model can
predict returns well and still get their slope wrong, so this module compares the gradients
themselves: the model's by autograd, the real one by central finite differences in a simulator
restarted from the same states (:func:`make_real_return`).

Everything here is in **raw** reward units (the simulator's): the model's normalised reward is
taken back with ``r = r̂ · reward_scale + reward_loc``. Results are plain Python floats and lists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torchrl.envs import EnvBase

from torchrl_flowmbpo.diagnostics.common import pearson
from torchrl_flowmbpo.modules.models.world_model import LatentWorldModel

__all__ = [
    "action_gradient_accuracy",
    "finite_difference_gradient",
    "make_exact_real_gradient",
    "make_real_return",
    "model_action_gradient",
    "smoothed_gradient",
]

#: ``real_return(observations [N, obs_dim], actions [N, H, A]) -> [N]`` discounted raw return.
RealReturn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``real_gradient(observations, actions) -> (R [N], dR/da [N, H, A])``, exact (float64).
RealGradient = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _check_inputs(observations: torch.Tensor, actions: torch.Tensor) -> None:
    if actions.ndim != 3 or observations.ndim != 2 or observations.shape[0] != actions.shape[0]:
        raise ValueError(
            "Expected observations [N, obs_dim] and actions [N, H, A], got "
            f"{tuple(observations.shape)} and {tuple(actions.shape)}."
        )
    if actions.numel() and float(actions.abs().max()) > 1.0:
        raise ValueError("actions must lie in [-1, 1] (the action bounds of the tasks).")


def model_action_gradient(
    world_model: LatentWorldModel,
    observations: torch.Tensor,
    actions: torch.Tensor,
    *,
    gamma: float,
    reward_scale: float = 1.0,
    reward_loc: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's open-loop return of an action sequence and its gradient w.r.t. the actions.

    ``z_0 = E(o)``, ``z_{t+1} = next(z_t, a_t)``, ``R_m = Σ_{t<H} γ^t (r̂(z_t, a_t) · reward_scale
    + reward_loc)`` (raw units; no termination, no bootstrap) and ``∂R_m / ∂a`` by autograd, per
    state (rows are independent, so the gradient of ``Σ_i R_m[i]`` holds each row's own).

    Only the actions are differentiated (``torch.autograd.grad``): the world model's parameters
    receive no ``.grad``, and its mode and ``requires_grad`` flags are left as they are. Works
    inside ``torch.no_grad()`` too.

    Args:
        world_model: the latent world model.
        observations: real start observations ``[N, obs_dim]``.
        actions: open-loop actions ``[N, H, A]``.

    Keyword Args:
        gamma: discount γ.
        reward_scale, reward_loc: take the model's normalised reward to raw units
            (``RewardNormalization.scale`` and ``.loc``).

    Returns:
        ``(R_m [N], ∂R_m/∂a [N, H, A])``, detached, in float64.

    Examples:
        >>> from torchrl_flowmbpo.modules.models import PWMWorldModel
        >>> wm = PWMWorldModel(3, 1, latent_dim=16, units=(32,), encoder_units=(32,))
        >>> ret, grad = model_action_gradient(wm, torch.zeros(2, 3), torch.zeros(2, 4, 1),
        ...                                   gamma=0.9)
        >>> ret.shape, grad.shape, wm.reward_head[-1].weight.grad is None
        (torch.Size([2]), torch.Size([2, 4, 1]), True)
    """
    _check_inputs(observations, actions)
    leaf = actions.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        latent = world_model.encode(observations.detach())
        ret = torch.zeros(actions.shape[0], dtype=leaf.dtype, device=leaf.device)
        for t in range(actions.shape[1]):
            ret = ret + gamma**t * world_model.reward(latent, leaf[:, t]).reshape(-1)
            if t < actions.shape[1] - 1:  # the last latent would feed no reward
                latent = world_model.next(latent, leaf[:, t])
        # allow_unused: a model whose reward ignores the actions has a zero gradient, not an error.
        (grad,) = torch.autograd.grad(ret.sum(), leaf, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(leaf)
    offset = reward_loc * sum(gamma**t for t in range(actions.shape[1]))
    ret = ret.detach().double() * reward_scale + offset
    return ret, grad.double() * reward_scale


@torch.no_grad()
def finite_difference_gradient(
    real_return: RealReturn,
    observations: torch.Tensor,
    actions: torch.Tensor,
    *,
    eps: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The real return of an action sequence and its gradient by central differences.

    For each entry ``(t, j)``, for all N states at once (``2 H A + 1`` calls of ``real_return``):
    ``a± = a`` with ``a±[:, t, j] = clamp(a[:, t, j] ± eps, -1, 1)`` and

    ``∂R/∂a_{t,j} ≈ (R(a+) − R(a−)) / (a+_{t,j} − a−_{t,j})``.

    Clamping keeps the perturbed actions where the env acts on them (the tasks clip actions to
    [-1, 1], so a step past the bound would change nothing and halve the estimate). Dividing by
    the actual step makes this the central difference of step 2·eps inside
    ``[-1 + eps, 1 − eps]`` (error O(eps²)) and a one-sided difference of step ``eps`` at a bound
    (error O(eps)); in between, an asymmetric difference of step in ``(eps, 2 eps)``.

    Args:
        real_return: ``(observations [N, obs_dim], actions [N, H, A]) -> [N]``, the real
            discounted return from those states (e.g. :func:`make_real_return`).
        observations: real start observations ``[N, obs_dim]``.
        actions: actions ``[N, H, A]`` in [-1, 1].

    Keyword Args:
        eps: the perturbation (> 0).

    Returns:
        ``(R(a) [N], ∂R/∂a [N, H, A])`` in float64.

    Examples:
        >>> quadratic = lambda obs, act: -(act**2).sum((1, 2))
        >>> ret, grad = finite_difference_gradient(quadratic, torch.zeros(1, 2),
        ...                                        torch.tensor([[[0.5], [1.0]]]))
        >>> ret.tolist(), [round(g, 4) for g in grad.flatten().tolist()]
        ([-1.25], [-1.0, -1.95])
    """
    _check_inputs(observations, actions)
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}.")
    base = real_return(observations, actions).reshape(-1).double()
    grad = torch.zeros(actions.shape, dtype=torch.float64, device=base.device)
    for t in range(actions.shape[1]):
        for j in range(actions.shape[2]):
            plus, minus = actions.clone(), actions.clone()
            plus[:, t, j] = (actions[:, t, j] + eps).clamp(-1.0, 1.0)
            minus[:, t, j] = (actions[:, t, j] - eps).clamp(-1.0, 1.0)
            # Never zero: the interval [-1, 1] is wider than any clamped step is short.
            step = (plus[:, t, j] - minus[:, t, j]).double().to(base.device)
            diff = real_return(observations, plus).reshape(-1).double()
            diff = diff - real_return(observations, minus).reshape(-1).double()
            grad[:, t, j] = diff / step
    return base, grad


class _Smoothing(NamedTuple):
    """Antithetic samples of a smoothed real return (see :func:`_smoothing_samples`)."""

    base: torch.Tensor  # R(a) [N], CPU float64
    terms: torch.Tensor  # (R(a + σε_m) − R(a − σε_m)) ε_m / 2σ [M, N, H, A], CPU float64
    noise: torch.Tensor  # ε [M, N, H, A]
    plus: torch.Tensor  # a + σε, clamped to [-1, 1]
    minus: torch.Tensor  # a − σε, clamped to [-1, 1]


def _antithetic_term(
    plus_return: torch.Tensor, minus_return: torch.Tensor, noise: torch.Tensor, sigma: float
) -> torch.Tensor:
    """``(R⁺ − R⁻) ε / 2σ`` ``[N, H, A]`` of one pair (CPU, float64)."""
    diff = plus_return.reshape(-1).double() - minus_return.reshape(-1).double()
    return diff.view(-1, 1, 1).cpu() * noise.double().cpu() / (2 * sigma)


@torch.no_grad()
def _smoothing_samples(
    real_return: RealReturn,
    observations: torch.Tensor,
    actions: torch.Tensor,
    sigma: float,
    samples: int,
    generator: torch.Generator | None,
) -> _Smoothing:
    """The real return's antithetic terms at ``samples`` pairs ``a ± σε``, ε ~ N(0, I)."""
    if sigma <= 0 or samples < 2:
        raise ValueError(f"need sigma > 0 and samples >= 2, got {sigma} and {samples}.")
    noise = torch.randn(
        (samples, *actions.shape), generator=generator, device=actions.device, dtype=actions.dtype
    )
    plus = (actions + sigma * noise).clamp(-1.0, 1.0)
    minus = (actions - sigma * noise).clamp(-1.0, 1.0)
    base = real_return(observations, actions).reshape(-1).double().cpu()
    terms = [
        _antithetic_term(
            real_return(observations, plus[m]), real_return(observations, minus[m]), noise[m], sigma
        )
        for m in range(samples)
    ]
    return _Smoothing(base, torch.stack(terms), noise, plus, minus)


def smoothed_gradient(
    real_return: RealReturn,
    observations: torch.Tensor,
    actions: torch.Tensor,
    *,
    sigma: float,
    samples: int = 128,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The real return of an action sequence and the gradient of its Gaussian smoothing.

    ``R_σ(a) = E_ε[R(a + σε)]``, ε ~ N(0, I): the return a policy with action noise σ gets on
    average, whose gradient is the slope such a policy can follow (on a rugged, contact-rich
    return the finite-difference slope at one point need not be). Estimated with ``samples``
    antithetic pairs (``2 samples + 1`` calls of ``real_return``):

    ``∂R_σ/∂a ≈ (1/M) Σ_m (R(a + σε_m) − R(a − σε_m)) ε_m / 2σ``.

    Perturbed actions are clamped to [-1, 1] (where the tasks act on them), which biases the
    estimate for actions within about 2σ of a bound. The estimate's noise grows with the
    dimension ``H·A`` over ``samples``: for a linear return its expected cosine to the true
    slope is about ``(1 + H A / M)^(-1/2)``.

    Args:
        real_return: ``(observations [N, obs_dim], actions [N, H, A]) -> [N]`` real return.
        observations: real start observations ``[N, obs_dim]``.
        actions: actions ``[N, H, A]`` in [-1, 1].

    Keyword Args:
        sigma: the smoothing scale (> 0), e.g. the policy's action std.
        samples: antithetic pairs M (>= 2).
        generator: the noise's random generator (None: torch's global one).

    Returns:
        ``(R(a) [N], ∂R_σ/∂a [N, H, A])`` in float64 on the CPU.

    Examples:
        >>> quadratic = lambda obs, act: -(act**2).sum((1, 2))
        >>> gen = torch.Generator().manual_seed(0)
        >>> ret, grad = smoothed_gradient(quadratic, torch.zeros(1, 2),
        ...                               torch.tensor([[[0.5], [-0.25]]]), sigma=0.1,
        ...                               samples=4000, generator=gen)
        >>> ret.tolist(), [round(g, 1) for g in grad.flatten().tolist()]
        ([-0.3125], [-1.0, 0.5])
    """
    _check_inputs(observations, actions)
    smoothing = _smoothing_samples(real_return, observations, actions, sigma, samples, generator)
    return smoothing.base, smoothing.terms.mean(0)


def _smoothed_model_slopes(
    world_model: LatentWorldModel,
    observations: torch.Tensor,
    smoothing: _Smoothing,
    sigma: float,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's ``∂R_σ/∂a`` two ways at the real estimate's pairs: the mean of its autograd
    gradients at the perturbed sequences ``[N, H, A]`` (pathwise: what an actor with that noise
    receives) and the antithetic terms of its returns ``[M, N, H, A]`` (zeroth-order: what an
    update that only evaluates the model's returns would follow)."""
    total = torch.zeros(smoothing.plus.shape[1:], dtype=torch.float64)
    terms = []
    for plus, minus, noise in zip(smoothing.plus, smoothing.minus, smoothing.noise, strict=True):
        plus_return, plus_grad = model_action_gradient(world_model, observations, plus, **kwargs)
        minus_return, minus_grad = model_action_gradient(world_model, observations, minus, **kwargs)
        total += plus_grad.cpu() + minus_grad.cpu()
        terms.append(_antithetic_term(plus_return, minus_return, noise, sigma))
    return total / (2 * len(terms)), torch.stack(terms)


def _cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of ``[..., D]`` vectors; NaN where either is zero (no direction)."""
    norm = x.norm(dim=-1) * y.norm(dim=-1)
    cos = (x * y).sum(-1) / norm
    return torch.where(norm > 0, cos, torch.full_like(cos, math.nan))


def _mean_median(values: torch.Tensor) -> tuple[float, float]:
    """Mean and median of the finite entries (NaN, NaN when there is none)."""
    finite = values[values.isfinite()]
    if not finite.numel():
        return math.nan, math.nan
    return float(finite.mean()), float(finite.quantile(0.5))


def action_gradient_accuracy(
    world_model: LatentWorldModel,
    observations: torch.Tensor,
    actions: torch.Tensor,
    real_return: RealReturn,
    *,
    gamma: float,
    reward_scale: float = 1.0,
    reward_loc: float = 0.0,
    eps: float = 0.05,
    reference_eps: float | None = None,
    smoothing: float | None = None,
    smoothing_samples: int = 128,
    generator: torch.Generator | None = None,
    real_gradient: RealGradient | None = None,
) -> dict[str, Any]:
    """How well the world model's return gradient w.r.t. the actions matches the real one.

    From real start observations ``o`` ``[N, obs_dim]`` and an open-loop action sequence ``a``
    ``[N, H, A]`` in [-1, 1] (e.g. uniform random):

    - model: ``R_m = Σ_{t<H} γ^t (r̂(z_t, a_t) · reward_scale + reward_loc)``, ``z_0 = E(o)``,
      ``z_{t+1} = next(z_t, a_t)``, and ``g_m = ∂R_m/∂a`` by autograd
      (:func:`model_action_gradient`; the world model's parameters get no ``.grad``);
    - real: ``R = real_return(o, a)`` (raw units, the same γ) and ``g = ∂R/∂a`` by central
      differences of step ``eps``, one-sided at the action bounds
      (:func:`finite_difference_gradient`: ``2 H A + 1`` calls of ``real_return``), or exactly
      where the simulator is differentiable: ``real_gradient`` (:func:`make_exact_real_gradient`)
      then supplies ``R`` and ``g`` by autograd through the simulator.

    With ``cos(u, v) = u·v / (|u| |v|)`` (NaN when either is zero):

    - ``value_corr`` = Pearson_i(R_m, R); ``model_return_mean``, ``real_return_mean``;
    - ``grad_cos_mean``, ``grad_cos_median``: mean / median over states of
      ``cos(g_m[i], g[i])``, the gradients flattened over the ``H·A`` sequence (NaN states left
      out);
    - ``grad_cos_per_step[t]`` = ``cos(g_m[:, t, :], g[:, t, :])``, flattened over states and
      action dims (H values); ``grad_cos_first`` and ``grad_cos_last`` are its ends (the last
      action only reaches the immediate reward);
    - ``first_action_sign_agreement`` = mean_{i,j} [sign g_m[i, 0, j] = sign g[i, 0, j]]: how
      often the first action would be pushed the right way;
    - ``grad_norm_ratio`` = mean_i |g_m[i]| / mean_i |g[i]| (> 1: the model's slope is steeper);
      ``grad_norm_ratio_per_step[t]`` the same ratio for the actions of step t;
    - ``count`` = N;
    - with ``reference_eps``, also ``real_self_cos_mean``, ``real_self_cos_median``: mean /
      median over states of ``cos(g[i], g'[i])``, ``g'`` the real gradient by differences of
      step ``reference_eps`` (another ``2 H A + 1`` calls): ~1 on a smooth return; low where
      contacts make the return rugged, so that "the real gradient" depends on the step and a
      larger ``eps`` is the smoothed slope an actor can follow. With ``real_gradient``,
      ``reference_eps`` compares the exact gradient with finite differences of that step.

    With ``smoothing = σ`` both slopes are those of the Gaussian-smoothed return
    ``R_σ(a) = E[R(a + σε)]`` instead: the real one by :func:`smoothed_gradient`
    (``smoothing_samples`` antithetic pairs, ``2 M + 1`` calls), the model's as the mean of its
    autograd gradients at the same perturbed sequences; ``eps`` and ``reference_eps`` are then
    unused, and ``real_self_cos_mean`` / ``_median`` compare the real estimates of the two
    halves of the pairs (the estimator's own noise: for a linear return about
    ``1 / (1 + 2 H A / M)``). The model's slope is also estimated the zeroth-order way, from its
    returns alone at the same pairs (the antithetic formula on ``R_m``: the slope an update that
    only evaluates the model would follow): ``model_zeroth_cos_mean`` / ``_median`` compare its
    first-half estimate with the real second-half one (independent noise: the real halves'
    agreement ``real_self_cos_*`` is the ceiling), ``model_zeroth_norm_ratio`` the norms of the
    all-pairs estimates.

    Termination is not modelled on either side: ``real_return`` decides what happens after an
    episode end (:func:`make_real_return` stops counting rewards).

    Args:
        world_model: the latent world model.
        observations: real start observations ``[N, obs_dim]``.
        actions: open-loop actions ``[N, H, A]`` in [-1, 1].
        real_return: ``(observations, actions) -> [N]`` real discounted raw return.

    Keyword Args:
        gamma: discount γ (the one ``real_return`` uses).
        reward_scale, reward_loc: take the model's normalised reward to raw units
            (``RewardNormalization.scale`` / ``.loc``; 1 and 0 for a model of raw rewards).
        eps: finite-difference step.
        reference_eps: a second finite-difference step for ``real_self_cos_*`` (None: off).
        smoothing: compare the slopes of the return smoothed with action noise of this std
            (None: the finite-difference slope at ``a``).
        smoothing_samples: antithetic pairs of the smoothed real slope.
        generator: the smoothing noise's random generator (None: torch's global one).
        real_gradient: the exact real return and gradient (:func:`make_exact_real_gradient`);
            replaces the finite differences (not combinable with ``smoothing``).

    Returns:
        The floats above and the list ``grad_cos_per_step``.

    Examples:
        >>> from torchrl_flowmbpo.modules.models import PWMWorldModel
        >>> _ = torch.manual_seed(0)
        >>> wm = PWMWorldModel(3, 1, latent_dim=16, units=(32,), encoder_units=(32,))
        >>> _ = torch.nn.init.normal_(wm.reward_head[-1].weight)  # a fresh head is constant
        >>> real = lambda obs, act: -(act**2).sum((1, 2))
        >>> out = action_gradient_accuracy(wm, torch.randn(8, 3), torch.rand(8, 4, 1) - 0.5,
        ...                                real, gamma=0.9)
        >>> len(out["grad_cos_per_step"]), -1 <= out["grad_cos_mean"] <= 1, out["count"]
        (4, True, 8.0)
    """
    if real_gradient is not None and smoothing is not None:
        raise ValueError("real_gradient gives the exact slope at a; smoothing must be None.")
    units = {"gamma": gamma, "reward_scale": reward_scale, "reward_loc": reward_loc}
    model_ret, model_grad = model_action_gradient(world_model, observations, actions, **units)
    self_cos = None
    if real_gradient is not None:
        real_ret, real_grad = real_gradient(observations, actions)
    elif smoothing is None:
        real_ret, real_grad = finite_difference_gradient(
            real_return, observations, actions, eps=eps
        )
    else:
        samples = _smoothing_samples(
            real_return, observations, actions, smoothing, smoothing_samples, generator
        )
        real_ret, terms = samples.base, samples.terms
        real_grad = terms.mean(0)
        half = terms.shape[0] // 2
        n = actions.shape[0]
        first, second = terms[:half].mean(0).reshape(n, -1), terms[half:].mean(0).reshape(n, -1)
        self_cos = _cosine(first, second)
        model_grad, model_terms = _smoothed_model_slopes(
            world_model, observations, samples, smoothing, **units
        )
        # The model's first-half estimate against the real second half: independent noise, so
        # the real halves' own agreement (self_cos) is its ceiling.
        zeroth_cos = _cosine(model_terms[:half].mean(0).reshape(n, -1), second)
        zeroth_norm = float(model_terms.mean(0).reshape(n, -1).norm(dim=-1).mean())
    model_ret, model_grad = model_ret.cpu(), model_grad.cpu()
    real_ret, real_grad = real_ret.cpu(), real_grad.cpu()
    n = actions.shape[0]
    per_state = _cosine(model_grad.reshape(n, -1), real_grad.reshape(n, -1))
    cos_mean, cos_median = _mean_median(per_state)
    per_step = _cosine(
        model_grad.transpose(0, 1).reshape(actions.shape[1], -1),
        real_grad.transpose(0, 1).reshape(actions.shape[1], -1),
    ).tolist()
    first_signs = model_grad[:, 0].sign() == real_grad[:, 0].sign()
    step_norms = [
        (model_grad[:, t].norm(dim=-1).mean() / real_grad[:, t].norm(dim=-1).mean()).item()
        for t in range(actions.shape[1])
    ]
    real_norm = float(real_grad.reshape(n, -1).norm(dim=-1).mean())
    model_norm = float(model_grad.reshape(n, -1).norm(dim=-1).mean())
    result = {
        "value_corr": pearson(model_ret, real_ret),
        "model_return_mean": float(model_ret.mean()),
        "real_return_mean": float(real_ret.mean()),
        "grad_cos_mean": cos_mean,
        "grad_cos_median": cos_median,
        "grad_cos_per_step": per_step,
        "grad_cos_first": per_step[0],
        "grad_cos_last": per_step[-1],
        "first_action_sign_agreement": float(first_signs.double().mean()),
        "grad_norm_ratio": model_norm / real_norm if real_norm > 0 else math.nan,
        "grad_norm_ratio_per_step": step_norms,
        "count": float(n),
    }
    if smoothing is None and reference_eps is not None:
        _, reference = finite_difference_gradient(
            real_return, observations, actions, eps=reference_eps
        )
        self_cos = _cosine(real_grad.reshape(n, -1), reference.cpu().reshape(n, -1))
    if self_cos is not None:
        result["real_self_cos_mean"], result["real_self_cos_median"] = _mean_median(self_cos)
    if smoothing is not None:
        result["model_zeroth_cos_mean"], result["model_zeroth_cos_median"] = _mean_median(
            zeroth_cos
        )
        result["model_zeroth_norm_ratio"] = zeroth_norm / real_norm if real_norm > 0 else math.nan
    return result


def _open_loop_return(
    env: EnvBase, observations: torch.Tensor, actions: torch.Tensor, gamma: float
) -> torch.Tensor:
    """``Σ_{t<H} γ^t alive_t r_t`` ``[N]`` of ``actions`` from the restarted worlds (see
    :func:`make_real_return`), with the env's gradients where it has them."""
    n = actions.shape[0]
    if tuple(env.batch_size) != (n,):
        raise ValueError(f"The env has batch size {tuple(env.batch_size)}, not ({n},).")
    td = env.set_state_from_observation(observations.to(env.device))
    total = torch.zeros(n, dtype=torch.float64, device=env.device)
    alive = torch.ones(n, dtype=torch.bool, device=env.device)
    for t in range(actions.shape[1]):
        out = env.step(td.set("action", actions[:, t].to(env.device)))
        reward = out.get(("next", "reward")).reshape(n).double()
        total = total + gamma**t * alive.double() * reward
        alive &= ~out.get(("next", "done")).reshape(n)
        td = env.step_mdp(out)
    return total


def make_real_return(env: EnvBase, *, gamma: float) -> RealReturn:
    """``real_return(observations, actions)`` for :func:`action_gradient_accuracy` from an env.

    ``env`` is a batched env of ``N`` worlds with a ``set_state_from_observation(obs)`` method
    that puts every world into the state of ``obs`` ``[N, obs_dim]`` and returns the
    TensorDict a reset would (every built-in task has one).
    The callable restarts the worlds there, steps the given actions ``[N, H, A]`` open loop and
    returns ``Σ_{t<H} γ^t alive_t r_t`` ``[N]`` (float64, raw rewards), where ``alive_t`` is 0
    after the first ``done`` of a world (the rest belongs to no episode). It changes the env's
    state; use the base env, not a ``TransformedEnv`` whose transforms would miss the restart.

    Args:
        env: the env to step, with ``batch_size == [N]``.

    Keyword Args:
        gamma: discount γ.

    Raises:
        TypeError: when ``env`` has no ``set_state_from_observation``.

    Examples:
        >>> from torchrl_flowmbpo.envs.locomotion import CartPoleEnv
        >>> env = CartPoleEnv(2, seed=0, start_angle=0.0, reward_type="bounded")
        >>> real_return = make_real_return(env, gamma=0.9)
        >>> ret = real_return(env.reset()["observation"], torch.zeros(2, 3, 1))
        >>> ret.shape, bool((ret > 0).all())
        (torch.Size([2]), True)
    """
    if not callable(getattr(env, "set_state_from_observation", None)):
        raise TypeError(
            f"{type(env).__name__} has no set_state_from_observation(observation): the real "
            "return cannot be restarted from given states."
        )

    @torch.no_grad()
    def real_return(observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return _open_loop_return(env, observations, actions, gamma).double()

    return real_return


def make_exact_real_gradient(env: EnvBase, *, gamma: float) -> RealGradient:
    """``real_gradient(observations, actions)`` for :func:`action_gradient_accuracy`: the real
    return of :func:`make_real_return` and its exact gradient w.r.t. the actions.

    ``env`` must be differentiable (e.g. ``CartPoleEnv(..., differentiable=True)``): the return
    ``Σ_{t<H} γ^t alive_t r_t`` is computed as :func:`make_real_return` does, with gradients
    through every simulator step, and differentiated by autograd. Only the actions are
    differentiated; works inside ``torch.no_grad()`` too.

    Args:
        env: a differentiable batched env with ``set_state_from_observation``.

    Keyword Args:
        gamma: discount γ.

    Raises:
        TypeError: when ``env`` is not differentiable or cannot be restarted from observations.

    Examples:
        >>> from torchrl_flowmbpo.envs.locomotion import CartPoleEnv
        >>> env = CartPoleEnv(2, seed=0, differentiable=True)
        >>> exact = make_exact_real_gradient(env, gamma=0.99)
        >>> ret, grad = exact(env.reset()["observation"], torch.zeros(2, 4, 1))
        >>> ret.shape, grad.shape, grad.dtype
        (torch.Size([2]), torch.Size([2, 4, 1]), torch.float64)
    """
    if not getattr(env, "differentiable", False):
        raise TypeError(
            f"{type(env).__name__} is not differentiable: build it with differentiable=True "
            "(tasks that have the option: the cartpole), or use finite differences."
        )
    if not callable(getattr(env, "set_state_from_observation", None)):
        raise TypeError(f"{type(env).__name__} has no set_state_from_observation(observation).")

    def real_gradient(
        observations: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        leaf = actions.detach().to(env.device, torch.float32).requires_grad_(True)
        with torch.enable_grad():
            ret = _open_loop_return(env, observations, leaf, gamma)
            (grad,) = torch.autograd.grad(ret.sum(), leaf)
        return ret.detach(), grad.double()

    return real_gradient
