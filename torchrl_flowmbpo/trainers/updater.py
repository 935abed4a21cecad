"""PWM's optimisation steps: the actor step, the critic steps, the world-model steps.

The critic can also regress TD(λ) targets of real replay slices (``real_value_coef``): PWM's critic
sees only the current policy's imagined states, so it cannot value states the policy does not
reach yet (e.g. those of a gait in the replay).

Metrics come back as Python floats, so no tensor (or graph) outlives an update. They stay on the
device until the end of each call and cross to the host in one transfer: on a GPU every
``float(tensor)`` is a sync that stalls the stream.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import SoftUpdate

from torchrl_flowmbpo.objectives import PWMActorLoss, PWMValueLoss, WorldModelLoss

__all__ = ["PWMUpdater"]


def _loss_sum(losses: TensorDictBase) -> torch.Tensor:
    return sum(value for key, value in losses.items() if key.startswith("loss_"))


def _to_floats(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scalar tensors to floats with a single device-to-host copy."""
    values = torch.stack([value.detach().reshape(()) for value in metrics.values()])
    return dict(zip(metrics, values.tolist(), strict=True))


class PWMUpdater:
    """Applies PWM's three optimisation steps with gradient clipping and NaN protection.

    A step whose gradient norm is not finite is skipped (parameters untouched) and counted in
    ``skipped_steps`` instead of corrupting the run.

    Args:
        wm_loss: the world-model loss.
        actor_loss: the actor loss.
        value_loss: the value loss.
        optimizers: ``{"world_model", "actor", "critic"}`` optimisers.
        grad_clips: global grad-norm clip per optimiser name.

    Keyword Args:
        critic_iterations: passes over the imagined batch per update.
        critic_minibatches: minibatches per pass.
        target_tau: Polyak rate of the target critic (used only if the value loss has one).
        real_value_coef: weight of the critic's loss on real replay slices passed to
            :meth:`actor_critic_step` (0: imagined rollouts only, as in PWM). Their targets are
            TD(λ) returns of the real (normalised) rewards and terminations, bootstrapped by
            the critic on encoded observations: the value of the data's policies, not of the
            current one.

    Raises:
        ValueError: if the value loss has a target critic and the actor loss does not bootstrap
            from it (e.g. ``bootstrap_params`` forgotten: the actor would silently follow the
            online critic while the critic's targets use the target critic).
    """

    def __init__(
        self,
        wm_loss: WorldModelLoss,
        actor_loss: PWMActorLoss,
        value_loss: PWMValueLoss,
        optimizers: dict[str, torch.optim.Optimizer],
        grad_clips: dict[str, float],
        *,
        critic_iterations: int = 8,
        critic_minibatches: int = 4,
        target_tau: float = 0.005,
        real_value_coef: float = 0.0,
    ) -> None:
        if not real_value_coef >= 0.0:
            raise ValueError(f"real_value_coef must be >= 0, got {real_value_coef!r}.")
        self.real_value_coef = real_value_coef
        self.wm_loss, self.actor_loss, self.value_loss = wm_loss, actor_loss, value_loss
        self.optimizers, self.grad_clips = optimizers, grad_clips
        self.critic_iterations, self.critic_minibatches = critic_iterations, critic_minibatches
        self.target_updater = (
            SoftUpdate(value_loss, tau=target_tau) if value_loss.target_critic else None
        )
        # Read after SoftUpdate exists: TorchRL warns about target parameters read before.
        if value_loss.target_critic and (
            actor_loss.bootstrap_params is not value_loss.target_critic_network_params
        ):
            raise ValueError(
                "The value loss has a target critic but the actor loss bootstraps from other "
                "parameters: build it with value_loss=value_loss (or "
                "bootstrap_params=value_loss.target_critic_network_params)."
            )
        self.skipped_steps = {name: 0 for name in optimizers}

    def _step(self, name: str, loss: torch.Tensor) -> torch.Tensor:
        """Backward, clip and step; returns the (pre-clip) gradient norm as a tensor."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params: Iterable[torch.Tensor] = [
            p for group in optimizer.param_groups for p in group["params"] if p.grad is not None
        ]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clips[name])
        if not torch.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)
            self.skipped_steps[name] += 1
        else:
            optimizer.step()
        return grad_norm

    def world_model_step(self, batch: TensorDictBase) -> dict[str, float]:
        """One world-model step on ``[B, H]`` replay slices."""
        losses = self.wm_loss(batch)
        total = _loss_sum(losses)
        metrics = dict(losses.items())
        metrics["grad_norm"] = self._step("world_model", total)
        metrics["loss"] = total
        return _to_floats(metrics)

    @torch.no_grad()
    def world_model_metrics(self, batch: TensorDictBase) -> dict[str, float]:
        """The world-model losses on ``[B, H]`` slices without a step (a frozen model's fit)."""
        losses = self.wm_loss(batch)
        metrics = dict(losses.items())
        metrics["loss"] = _loss_sum(losses)
        return _to_floats(metrics)

    @torch.no_grad()
    def real_value_samples(self, slices: TensorDictBase) -> TensorDictBase:
        """Flat critic samples (latent, value target) of ``[B, T]`` real replay slices.

        Each slice lies within one episode, so only its last row can end one: a termination
        zeroes that row's bootstrap, a truncation bootstraps from the final observation.
        """
        obs_keys, keys = self.wm_loss.tensor_keys, self.value_loss.tensor_keys
        encode = self.wm_loss.world_model.encode
        terminated = slices.get(obs_keys.terminated)
        trajectory = TensorDict(
            {
                keys.latent: encode(slices.get(obs_keys.observation)),
                ("next", keys.latent): encode(slices.get(obs_keys.next_observation)),
                ("next", keys.reward): slices.get(obs_keys.reward),
                ("next", keys.continue_prob): (~terminated.bool()).float(),
            },
            batch_size=slices.batch_size,
        )
        trajectory = self.value_loss.compute_value_targets(trajectory)
        return trajectory.select(keys.latent, keys.value_target).reshape(-1)

    def actor_critic_step(
        self,
        start: TensorDictBase,
        *,
        update_actor: bool = True,
        real_slices: TensorDictBase | None = None,
        return_trajectory: bool = False,
    ) -> dict[str, float] | tuple[dict[str, float], TensorDictBase]:
        """One actor step from real start observations, then the critic steps on its rollout.

        With ``update_actor=False`` the actor only imagines (critic warm-up): the critic learns
        the value of the initial policy before the actor follows its gradients. With
        ``real_value_coef > 0``, every critic step adds that weight times the loss on a
        minibatch of ``real_slices`` (``[B, T]`` replay rows; the targets are fixed once per
        call). With ``return_trajectory`` it returns ``(metrics, trajectory)``: the actor's
        detached rollout with its value targets (SHAC reads its episode statistics).
        """
        use_real = self.real_value_coef > 0
        if use_real and real_slices is None:
            raise ValueError("real_value_coef > 0 needs real_slices for the critic's real loss.")
        with torch.set_grad_enabled(update_actor):
            losses, trajectory = self.actor_loss(start)
        metrics = {f"actor/{key}": value for key, value in losses.items()}
        if update_actor:
            metrics["actor/grad_norm"] = self._step("actor", _loss_sum(losses))
        trajectory = self.value_loss.compute_value_targets(trajectory)
        # Only the keys the critic reads are indexed per minibatch, not the whole rollout.
        samples = trajectory.select(*self.value_loss.minibatch_keys, strict=False).reshape(-1)
        minibatch = max(samples.numel() // self.critic_minibatches, 1)
        if use_real:
            real = self.real_value_samples(real_slices)
            real_minibatch = max(real.numel() // self.critic_minibatches, 1)
        value_losses, real_losses = [], []
        for _ in range(self.critic_iterations):
            order = torch.randperm(samples.numel(), device=samples.device)
            if use_real:
                real_chunks = torch.randperm(real.numel(), device=real.device).split(real_minibatch)
            for index, chunk in enumerate(order.split(minibatch)):
                value_td = self.value_loss(samples[chunk])
                loss = value_td["loss_value"]
                if use_real:
                    real_loss = self.value_loss(real[real_chunks[index % len(real_chunks)]])
                    real_losses.append(real_loss["loss_value"].detach())
                    loss = loss + self.real_value_coef * real_loss["loss_value"]
                metrics["critic/grad_norm"] = self._step("critic", loss)
                value_losses.append(value_td["loss_value"].detach())
                if self.target_updater is not None:
                    self.target_updater.step()
        metrics["critic/loss_value"] = torch.stack(value_losses).mean()
        if use_real:
            metrics["critic/loss_value_real"] = torch.stack(real_losses).mean()
            metrics["critic/value_target_real_mean"] = real.get(
                self.value_loss.tensor_keys.value_target
            ).mean()
        metrics["critic/value_mean"] = value_td["value_mean"]
        metrics["critic/value_target_mean"] = value_td["value_target_mean"]
        if return_trajectory:
            return _to_floats(metrics), trajectory
        return _to_floats(metrics)
