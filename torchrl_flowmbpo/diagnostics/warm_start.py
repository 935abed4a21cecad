"""Scripted warm starts of a PWM run: init frames from a reference controller
(``research.init_controller``) and behaviour cloning of the actor on them
(``research.actor_bc_steps``). Both put prior knowledge into a run: experiments, off by default."""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_flowmbpo.diagnostics.controllers import Controller


class ControllerPrefill(TensorDictModuleBase):
    """The sampling policy, with its actions replaced by a scripted controller's for the first
    ``frames`` env frames (``research.init_controller``; the policy still runs, so the
    collector sees the same keys throughout).

    A deterministic controller's action is a function of the state, so a world model fitted to
    its frames alone need not learn what the actions do. ``noise_std`` adds Gaussian noise of
    that standard deviation to each scripted action (then clipped to [-1, 1];
    ``research.init_controller_noise``), which decorrelates the actions from the state.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> policy = TensorDictModule(lambda o: o[..., :1] * 0, ["observation"], ["action"])
        >>> prefill = ControllerPrefill(policy, lambda o: o[..., :1] + 1, frames=4)
        >>> td = TensorDict(observation=torch.zeros(2, 3), batch_size=[2])
        >>> [float(prefill(td.clone())["action"][0]) for _ in range(3)]
        [1.0, 1.0, 0.0]
    """

    def __init__(
        self,
        policy: TensorDictModuleBase,
        controller: Controller,
        frames: int,
        noise_std: float = 0.0,
    ) -> None:
        super().__init__()
        if not noise_std >= 0:
            raise ValueError(f"noise_std={noise_std} must be >= 0 (0: the controller's actions)")
        self.policy, self.controller, self.frames = policy, controller, frames
        self.noise_std = noise_std
        self.in_keys, self.out_keys = policy.in_keys, policy.out_keys
        self.frames_done = 0

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        tensordict = self.policy(tensordict)
        if self.frames_done < self.frames:
            action = self.controller(tensordict.get("observation"))
            if self.noise_std > 0:
                action = (action + self.noise_std * torch.randn_like(action)).clamp(-1.0, 1.0)
            tensordict.set("action", action.to(tensordict.get("action")))
            self.frames_done += tensordict.numel()
        return tensordict


def behaviour_cloning_step(
    world_model, actor, optimizer: torch.optim.Optimizer, batch: TensorDictBase
) -> float:
    """One supervised step of the actor toward the batch's actions; returns the loss.

    The loss is the mean squared error between the actor's deterministic action on the encoded
    observation ``E(o)`` (detached: the world model is not changed) and the stored action.
    """
    with torch.no_grad():
        latent = world_model.encode(batch.get("observation"))
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        action = actor(TensorDict(latent=latent, batch_size=latent.shape[:1])).get("action")
    loss = (action - batch.get("action")).pow(2).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
