"""Factories of the SAC baseline (:func:`~torchrl_flowmbpo.trainers.train_sac`): TorchRL's SAC
as in its sota-implementations/sac.

The networks, loss, target updater and optimisers take explicit arguments (the trainer reads
them from ``configs/sac.yaml``; its buffer and collector come from ``torchrl_flowmbpo.data``), so
each piece is usable from a plain script.

Examples:
    >>> import torch
    >>> from torchrl.data import Bounded
    >>> spec = Bounded(-1.0, 1.0, shape=(2,))
    >>> actor = make_actor(5, spec, hidden_sizes=(32, 32))
    >>> qvalue = make_qvalue(5, 2, hidden_sizes=(32, 32))
    >>> loss, target_updater = make_loss(actor, qvalue, spec, gamma=0.99, tau=0.005)
    >>> optimizers = make_optimizers(loss, lr=3e-4)
    >>> sorted(optimizers)
    ['actor', 'alpha', 'qvalue']
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import InteractionType, NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.data import TensorSpec
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import SACLoss, SoftUpdate


def make_actor(
    obs_dim: int, action_spec: TensorSpec, *, hidden_sizes: Sequence[int]
) -> ProbabilisticActor:
    """TanhNormal actor reading ``"observation"`` and writing ``"action"`` within the spec.

    Args:
        obs_dim: observation size.
        action_spec: the unbatched bounded action spec (its bounds scale the tanh).

    Keyword Args:
        hidden_sizes: MLP widths.
    """
    net = nn.Sequential(
        MLP(
            in_features=obs_dim,
            out_features=2 * action_spec.shape[-1],
            num_cells=list(hidden_sizes),
            activation_class=nn.ReLU,
        ),
        # sota's defaults: softplus scale equal to 1 at a zero output, floored at 0.1.
        NormalParamExtractor(scale_mapping="biased_softplus_1.0", scale_lb=0.1),
    )
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=action_spec,
        distribution_class=TanhNormal,
        distribution_kwargs={
            "low": action_spec.space.low,
            "high": action_spec.space.high,
            "tanh_loc": False,
        },
        default_interaction_type=InteractionType.RANDOM,
    )


def make_qvalue(obs_dim: int, action_dim: int, *, hidden_sizes: Sequence[int]) -> ValueOperator:
    """Q(s, a) network reading ``"observation"`` and ``"action"``; SACLoss makes the ensemble.

    Args:
        obs_dim: observation size.
        action_dim: action size.

    Keyword Args:
        hidden_sizes: MLP widths.
    """
    net = MLP(
        in_features=obs_dim + action_dim,
        out_features=1,
        num_cells=list(hidden_sizes),
        activation_class=nn.ReLU,
    )
    return ValueOperator(net, in_keys=["observation", "action"])


def make_loss(
    actor: ProbabilisticActor,
    qvalue: ValueOperator,
    action_spec: TensorSpec,
    *,
    gamma: float,
    tau: float,
    num_qvalue_nets: int = 2,
    alpha_init: float = 1.0,
) -> tuple[SACLoss, SoftUpdate]:
    """SACLoss (TD(0) targets, target Q ensemble, learned alpha) and its Polyak updater.

    Args:
        actor: the TanhNormal actor.
        qvalue: one Q network; the loss holds ``num_qvalue_nets`` independently drawn copies.
        action_spec: the unbatched action spec (target entropy -|A|).

    Keyword Args:
        gamma: discount in (0, 1].
        tau: Polyak weight of the target update, in (0, 1].
        num_qvalue_nets: Q ensemble size (the minimum is used).
        alpha_init: initial entropy temperature (> 0).

    Raises:
        ValueError: for a value outside its range.
    """
    for name, value, ok, allowed in (
        ("gamma", gamma, 0 < gamma <= 1, "in (0, 1]"),
        ("tau", tau, 0 < tau <= 1, "in (0, 1]"),
        ("num_qvalue_nets", num_qvalue_nets, num_qvalue_nets >= 1, ">= 1"),
        ("alpha_init", alpha_init, alpha_init > 0, "> 0"),
    ):
        if not ok:
            raise ValueError(f"sac.{name}={value} must be {allowed}.")
    loss = SACLoss(
        actor,
        qvalue,
        num_qvalue_nets=num_qvalue_nets,
        loss_function="l2",
        alpha_init=alpha_init,
        action_spec=action_spec,
        delay_qvalue=True,
    )
    loss.make_value_estimator(gamma=gamma)
    return loss, SoftUpdate(loss, tau=tau)


def make_optimizers(loss: SACLoss, *, lr: float) -> dict[str, torch.optim.Adam]:
    """One Adam per part, as sota: the actor, the Q ensemble and the log-temperature.

    Args:
        loss: the SAC loss whose (functional) parameters are optimised.

    Keyword Args:
        lr: learning rate of all three.
    """
    return {
        "actor": torch.optim.Adam(loss.actor_network_params.flatten_keys().values(), lr=lr),
        "qvalue": torch.optim.Adam(loss.qvalue_network_params.flatten_keys().values(), lr=lr),
        "alpha": torch.optim.Adam([loss.log_alpha], lr=lr),
    }


def update(
    loss: SACLoss,
    optimizers: dict[str, torch.optim.Optimizer],
    target_updater: SoftUpdate,
    batch: TensorDictBase,
) -> TensorDict:
    """One gradient step on every part, then a Polyak step of the target Q ensemble.

    The three losses are summed before one backward: SACLoss detaches the Q ensemble in the
    actor loss and the log-probability in the alpha loss, so each part gets only its own
    gradient.

    Args:
        loss: the SAC loss.
        optimizers: the optimisers of :func:`make_optimizers`.
        target_updater: the loss's :class:`SoftUpdate`.
        batch: sampled transitions with ``"observation"``, ``"action"`` and ``("next", ...)``
            observation, reward, done and terminated entries.

    Returns:
        The detached ``loss_*`` entries and the ``alpha`` and ``entropy`` diagnostics.
    """
    out = loss(batch)
    (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
    for optimizer in optimizers.values():
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    target_updater.step()
    return out.select("loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy").detach()
