"""The hand-written plain-PyTorch PWM iteration that ``update_step.py`` times against TorchRL.

The losses of ``WorldModelLoss``, ``PWMActorLoss`` and ``PWMValueLoss`` on plain tensors, calling
the plain ``nn.Module`` s directly: the world model's ``encode/next/reward/termination_logit``
(``velocity`` for flow matching), the actor's ``policy_net`` and the critic's ``net``. The
constants are the iteration's settings, shared with the TorchRL path. A module of
``update_step.py``, with no command line of its own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torch import nn

from torchrl_flowmbpo.modules.models.flow_world_model import FlowWorldModel

GAMMA, LMBDA, WM_RHO = 0.99, 0.95, 0.99
GRAD_CLIPS = {"world_model": 20.0, "actor": 1.0, "critic": 100.0}
SCHEDULE = {"wm_steps": 8, "critic_iterations": 8, "critic_minibatches": 4}


def plain_wm_tensors(batch: TensorDict) -> tuple[torch.Tensor, ...]:
    """``(o_t, o_{t+1}, a_t, r_t, terminated_t)`` plain tensors of ``[B, H]`` replay slices."""
    return (
        batch["observation"].contiguous(),
        batch["next", "observation"].contiguous(),
        batch["action"].contiguous(),
        batch["next", "reward"].contiguous(),
        batch["next", "terminated"].contiguous(),
    )


def plain_world_model_loss(
    wm: nn.Module,
    obs: torch.Tensor,
    next_obs: torch.Tensor,
    action: torch.Tensor,
    reward: torch.Tensor,
    terminated: torch.Tensor,
    *,
    horizon: int,
    rho: float = WM_RHO,
    term_pos_weight: float = 1.0,
) -> torch.Tensor:
    """PWM's world-model loss by hand, flow_source ``rollout``.

    Replay slices of ``>= H`` transitions, as :func:`plain_wm_tensors` returns them: ``obs``
    (o_t) and ``next_obs`` (o_{t+1}) are ``[B, >= H, obs]``, ``action``/``reward``/``terminated``
    are ``[B, >= H, .]``; the first H are used. Scalar reward head; termination head if the model
    has one. Returns ``(L_dyn + L_rew + L_term) / H`` (all coefficients 1).
    """
    if wm.reward_head_type != "scalar":
        raise ValueError("the plain loop implements the scalar reward head only")
    with torch.no_grad():
        targets = wm.encode(next_obs[:, :horizon])
    flow = isinstance(wm, FlowWorldModel)
    pos_weight = torch.tensor([term_pos_weight], device=obs.device)
    z = wm.encode(obs[:, 0])
    dyn, rew, term = [], [], []
    for t in range(horizon):
        a, target = action[:, t], targets[:, t]
        rew.append((wm.reward(z, a) - reward[:, t]).pow(2).squeeze(-1))
        if wm.has_termination:
            logit = wm.termination_logit(z, a)
            term.append(
                F.binary_cross_entropy_with_logits(
                    logit, terminated[:, t].to(logit.dtype), pos_weight=pos_weight, reduction="none"
                ).squeeze(-1)
            )
        z_next = wm.next(z, a)
        if flow:  # conditional flow matching from the rolled-out latent to sg(E(o_{t+1}))
            tau = torch.rand(*z.shape[:-1], 1, device=z.device, dtype=z.dtype)
            v = wm.velocity((1 - tau) * z + tau * target, a, tau)
            dyn.append((v - (target - z)).pow(2).mean(-1))
        else:
            dyn.append((z_next - target).pow(2).mean(-1))
        z = z_next
    weights = rho ** torch.arange(horizon, dtype=torch.float32, device=obs.device)
    loss = (weights * torch.stack(dyn, 1).mean(0)).sum() + (weights * torch.stack(rew, 1)).mean()
    if term:
        loss = loss + (weights * torch.stack(term, 1)).mean()
    return loss / horizon


def plain_sample_action(policy_net: nn.Module, latent: torch.Tensor) -> torch.Tensor:
    """``tanh(μ + σ ε)`` (GaussianPolicyNet) or ``tanh(Φ_ψ(σ ε; z))`` (FlowPolicyNet)."""
    if hasattr(policy_net, "transport"):
        cond, scale = policy_net(latent)
        return policy_net.transport(cond, scale * torch.randn_like(scale))
    loc, scale = policy_net(latent)
    return torch.tanh(loc + scale * torch.randn_like(loc))


class PlainRetRMS:
    """Running variance of the per-start actor loss (Chan's parallel update), PWM's ret_rms."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, x: torch.Tensor) -> None:
        var, mean = torch.var_mean(x.detach().double(), correction=0)
        var, mean, n = float(var), float(mean), x.numel()
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.var, self.count = m2 / total, total


def plain_actor_loss(
    wm: nn.Module,
    policy_net: nn.Module,
    critic_net: nn.Module,
    obs: torch.Tensor,
    *,
    horizon: int,
    gamma: float = GAMMA,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-start ``−J`` of an H-step imagined rollout and the detached rollout.

    World model and critic must be held out by the caller (``requires_grad_(False)``).
    """
    z = wm.encode(obs)
    latents, next_latents, rewards, logits = [], [], [], []
    for _ in range(horizon):
        a = plain_sample_action(policy_net, z)
        rewards.append(wm.reward(z, a))
        logits.append(wm.termination_logit(z, a))
        latents.append(z)
        z = wm.next(z, a)
        next_latents.append(z)
    bootstrap = critic_net(z)[1]
    reward = torch.stack(rewards)  # [H, B, 1]
    cont = 1.0 - torch.sigmoid(torch.stack(logits))
    survival_all = torch.cat([torch.ones_like(cont[:1]), cont]).cumprod(0)
    discount = gamma ** torch.arange(horizon, dtype=reward.dtype, device=reward.device)
    ret = (discount.view(-1, 1, 1) * survival_all[:-1] * reward).sum(0)
    ret = ret + gamma**horizon * survival_all[-1] * bootstrap
    traj = {
        "latent": torch.stack(latents).detach(),
        "next_latent": torch.stack(next_latents).detach(),
        "reward": reward.detach(),
        "continue": cont.detach(),
        "survival": survival_all[:-1].detach(),
    }
    return -ret.squeeze(-1), traj


@torch.no_grad()
def plain_td_lambda(
    reward: torch.Tensor, cont: torch.Tensor, next_value: torch.Tensor, gamma: float, lmbda: float
) -> torch.Tensor:
    """``G_t = r_t + γ c_t [(1−λ) V_{t+1} + λ G_{t+1}]``, ``G_{H−1} = r + γ c V_H``; time dim 0."""
    g = reward[-1] + gamma * cont[-1] * next_value[-1]
    out = [g]
    for t in range(reward.shape[0] - 2, -1, -1):
        g = reward[t] + gamma * cont[t] * ((1 - lmbda) * next_value[t] + lmbda * g)
        out.append(g)
    return torch.stack(out[::-1])


def plain_critic_loss(
    critic_net: nn.Module, latent: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """``mean_{k, samples} Γ (V_k(z) − G)²``."""
    members = critic_net(latent)[0]  # [N, M, 1]
    return ((members - target.unsqueeze(-2)).pow(2) * weight.unsqueeze(-2)).mean()


def _plain_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    grad_norm = nn.utils.clip_grad_norm_(params, clip)
    if torch.isfinite(grad_norm):
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)


class PlainIteration:
    """One PWM iteration on plain tensors and the plain nn.Modules."""

    def __init__(self, wm, actor, critic, optimizers, data, size) -> None:
        self.wm, self.policy_net, self.critic_net = wm, actor.policy_net, critic.net
        self.optimizers, self.data, self.size = optimizers, data, size
        self.ret_rms = PlainRetRMS()
        self.held_out = [p for m in (wm, critic) for p in m.parameters()]

    def __call__(self) -> None:
        horizon = self.size["horizon"]
        flags = [p.requires_grad for p in self.held_out]
        for p in self.held_out:
            p.requires_grad_(False)
        try:
            per_start, traj = plain_actor_loss(
                self.wm, self.policy_net, self.critic_net, self.data["start"], horizon=horizon
            )
        finally:
            for p, flag in zip(self.held_out, flags, strict=True):
                p.requires_grad_(flag)
        self.ret_rms.update(per_start)
        loss = per_start.mean() / math.sqrt(self.ret_rms.var + 1e-5)
        _plain_step(self.optimizers["actor"], loss, GRAD_CLIPS["actor"])
        with torch.no_grad():
            next_value = self.critic_net(traj["next_latent"])[1]
        target = plain_td_lambda(traj["reward"], traj["continue"], next_value, GAMMA, LMBDA)
        latent = traj["latent"].reshape(-1, traj["latent"].shape[-1])
        target, weight = target.reshape(-1, 1), traj["survival"].reshape(-1, 1)
        minibatch = latent.shape[0] // SCHEDULE["critic_minibatches"]
        for _ in range(SCHEDULE["critic_iterations"]):
            for idx in torch.randperm(latent.shape[0], device=latent.device).split(minibatch):
                loss = plain_critic_loss(self.critic_net, latent[idx], target[idx], weight[idx])
                _plain_step(self.optimizers["critic"], loss, GRAD_CLIPS["critic"])
        for tensors in self.data["wm_plain"]:
            loss = plain_world_model_loss(self.wm, *tensors, horizon=horizon)
            _plain_step(self.optimizers["world_model"], loss, GRAD_CLIPS["world_model"])
