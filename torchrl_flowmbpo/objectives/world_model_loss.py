"""The PWM world-model objective: latent dynamics (or flow matching), reward and termination."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from torchrl_flowmbpo.modules.models.flow_world_model import FlowWorldModel
from torchrl_flowmbpo.modules.models.world_model import LatentWorldModel
from torchrl_flowmbpo.objectives.common import check_finite, discount_weights, module_device

__all__ = ["FLOW_SOURCES", "WorldModelLoss"]

FLOW_SOURCES = ("rollout", "teacher")


class WorldModelLoss(LossModule):
    """World-model loss of PWM on replay slices (docs/algorithm.md, "World-model loss").

    On slices of ``[B, T]`` consecutive transitions (``T >= horizon``) the first ``horizon``
    transitions are used: ``z_0 = E(o_0)``, then ``z_{t+1} = next(z_t, a_t)`` autoregressively
    with gradient and no teacher forcing. With ``rho = wm_rho`` and stop-gradient encoder
    targets ``ẑ_{t+1} = sg(E(o_{t+1}))``:

    - dynamics: ``L_dyn = Σ_t rho^t · mean_b e_t`` where ``e_t`` is the latent consistency
      error (MLP model) or the conditional flow-matching error (flow model);
    - reward: ``L_rew = mean_{t,b} rho^t · ℓ(R(z_t, a_t), r_t)``, squared error or symlog two-hot
      soft cross-entropy, depending on the model's reward head;
    - termination (if the model has the head): ``L_term = mean_{t,b} rho^t · BCE(T(z_t, a_t),
      terminated_t)``, trained on ``terminated`` only, never on ``truncated``.

    The returned ``loss_dynamics``, ``loss_reward`` and ``loss_termination`` are
    ``c · L / horizon`` and sum to the total objective.

    With a flow model and ``flow_source="teacher"``, the flow source is ``sg(E(o_t))`` and the
    heads read ``E(o_t)`` with gradient, so no ODE is solved during the world-model update.

    A batch holding NaN or inf raises
    :class:`~torchrl_flowmbpo.objectives.common.NonFiniteBatchError` (nothing is computed).

    Args:
        world_model: the latent world model to train.

    Keyword Args:
        horizon: transitions used per slice (H).
        wm_rho: per-step weight decay rho (PWM uses gamma, 0.99).
        dynamics_coef: c_dyn.
        reward_coef: c_rew.
        termination_coef: c_term.
        term_pos_weight: positive-class weight of the termination BCE.
        flow_source: ``"rollout"`` (the model's own rolled-out latent) or ``"teacher"``.

    Examples:
        >>> from torchrl_flowmbpo.modules.models import FlowWorldModel
        >>> wm = FlowWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
        >>> loss = WorldModelLoss(wm, horizon=3)
        >>> batch = TensorDict({
        ...     "observation": torch.randn(8, 4, 4), "action": torch.rand(8, 4, 2) * 2 - 1,
        ...     ("next", "observation"): torch.randn(8, 4, 4),
        ...     ("next", "reward"): torch.randn(8, 4, 1),
        ...     ("next", "terminated"): torch.zeros(8, 4, 1, dtype=torch.bool)}, batch_size=[8, 4])
        >>> out = loss(batch)
        >>> sorted(k for k in out.keys() if k.startswith("loss_"))
        ['loss_dynamics', 'loss_reward', 'loss_termination']
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read by the loss.

        Attributes:
            observation: observations o_t. Defaults to ``"observation"``.
            next_observation: o_{t+1}. Defaults to ``("next", "observation")``.
            action: actions a_t. Defaults to ``"action"``.
            reward: (normalised) rewards r_t. Defaults to ``("next", "reward")``.
            terminated: termination flags of the transition. Defaults to
                ``("next", "terminated")``.
        """

        observation: NestedKey = "observation"
        next_observation: NestedKey = ("next", "observation")
        action: NestedKey = "action"
        reward: NestedKey = ("next", "reward")
        terminated: NestedKey = ("next", "terminated")

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys

    def __init__(
        self,
        world_model: LatentWorldModel,
        *,
        horizon: int = 16,
        wm_rho: float = 0.99,
        dynamics_coef: float = 1.0,
        reward_coef: float = 1.0,
        termination_coef: float = 1.0,
        term_pos_weight: float = 1.0,
        flow_source: str = "rollout",
    ) -> None:
        super().__init__()
        if flow_source not in FLOW_SOURCES:
            raise ValueError(f"Unknown flow_source {flow_source!r}; allowed: {FLOW_SOURCES}.")
        if flow_source == "teacher" and not isinstance(world_model, FlowWorldModel):
            raise ValueError("flow_source='teacher' needs a FlowWorldModel.")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}.")
        self.world_model = world_model
        self.horizon = horizon
        self.wm_rho = wm_rho
        self.dynamics_coef, self.reward_coef = dynamics_coef, reward_coef
        self.termination_coef = termination_coef
        self.flow_source = flow_source
        self.register_buffer(
            "term_pos_weight", torch.tensor([term_pos_weight], device=module_device(world_model))
        )

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        """The world-model loss has no value estimator."""

    @property
    def _in_keys(self) -> list[NestedKey]:
        keys = self.tensor_keys
        in_keys = [keys.observation, keys.next_observation, keys.action, keys.reward]
        if self.world_model.has_termination:
            in_keys.append(keys.terminated)
        return in_keys

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Computes the world-model loss on ``[B, T]`` slices (``T >= horizon``)."""
        if tensordict.ndim != 2 or tensordict.shape[1] < self.horizon:
            raise ValueError(
                f"WorldModelLoss expects [B, T] slices with T >= horizon={self.horizon}, "
                f"got batch shape {tuple(tensordict.shape)}."
            )
        check_finite(tensordict, self._in_keys, type(self).__name__)
        keys, horizon, wm = self.tensor_keys, self.horizon, self.world_model
        batch = tensordict[:, :horizon]
        obs, action = batch.get(keys.observation), batch.get(keys.action)
        reward = batch.get(keys.reward).to(obs.dtype)
        with torch.no_grad():
            targets = wm.encode(batch.get(keys.next_observation))
        teacher = self.flow_source == "teacher"
        teacher_latents = wm.encode(obs) if teacher else None
        latent = wm.encode(obs[:, 0])
        dyn_err, rew_loss, term_loss, reward_pred, term_prob = [], [], [], [], []
        for t in range(horizon):
            z_t = teacher_latents[:, t] if teacher else latent
            a_t = action[:, t]
            reward_out = wm.reward_output(z_t, a_t)
            rew_loss.append(wm.reward_loss(reward_out, reward[:, t]))
            reward_pred.append(wm.decode_reward(reward_out).detach())
            if wm.has_termination:
                logit = wm.termination_logit(z_t, a_t)
                target = batch.get(keys.terminated)[:, t].to(logit.dtype)
                term_loss.append(
                    F.binary_cross_entropy_with_logits(
                        logit, target, pos_weight=self.term_pos_weight, reduction="none"
                    ).squeeze(-1)
                )
                term_prob.append(torch.sigmoid(logit).detach())
            if teacher:
                dyn_err.append(wm.dynamics_error(z_t.detach(), a_t, targets[:, t]))
            else:
                latent = wm.next(latent, a_t)
                dyn_err.append(wm.dynamics_error(z_t, a_t, targets[:, t], next_latent=latent))
        rho = discount_weights(self.wm_rho, horizon, device=obs.device)
        dyn_err_t = torch.stack(dyn_err, 1).mean(0)
        loss_dynamics = (rho * dyn_err_t).sum() * self.dynamics_coef / horizon
        loss_reward = (rho * torch.stack(rew_loss, 1)).mean() * self.reward_coef / horizon
        reward_pred = torch.stack(reward_pred, 1)
        out = TensorDict(
            {
                "loss_dynamics": loss_dynamics,
                "loss_reward": loss_reward,
                "dynamics_error": dyn_err_t.detach().mean(),
                "dynamics_error_last": dyn_err_t.detach()[-1],
                "reward_mae": (reward_pred - reward).abs().mean(),
            },
            batch_size=[],
        )
        if wm.has_termination:
            term = (rho * torch.stack(term_loss, 1)).mean()
            out["loss_termination"] = term * self.termination_coef / horizon
            out["termination_prob"] = torch.stack(term_prob, 1).mean()
            out["termination_rate"] = batch.get(keys.terminated).float().mean()
        return out
