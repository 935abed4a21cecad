"""An imagined latent env: a world model rolled out as a TorchRL ``ModelBasedEnvBase``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs.model_based import ModelBasedEnvBase

from torchrl_flowmbpo.modules.models.world_model import LatentWorldModel
from torchrl_flowmbpo.modules.world_model_operators import world_model_wrapper

__all__ = ["ImaginedLatentEnv"]


class ImaginedLatentEnv(ModelBasedEnvBase):
    """Rolls a latent world model forward under a policy, keeping gradients through ``rollout()``.

    The specs are unbatched, so the env accepts start latents of any batch shape (a replay batch
    ``[B]`` or ``[B, T]``). Imagined episodes never end: ``done``/``terminated`` stay False and
    the predicted termination logit of each transition is an observation
    (``("next", "termination_logit")``), from which losses build continue weights.

    Args:
        world_model: the latent world model (MLP or flow).

    Keyword Args:
        device: device of the specs; defaults to the world model's.
        latent_key: key of the latent (observation and state).
        reward_key: key of the imagined reward.
        termination_key: key of the predicted termination logit (an observation).

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl.envs.utils import check_env_specs
        >>> from torchrl_flowmbpo.modules.models import FlowWorldModel
        >>> wm = FlowWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
        >>> env = ImaginedLatentEnv(wm)
        >>> check_env_specs(env)
        >>> start = TensorDict(latent=wm.encode(torch.randn(5, 4)), batch_size=[5])
        >>> traj = env.rollout(16, tensordict=start, auto_reset=True,
        ...                    break_when_any_done=False, return_contiguous=True)
        >>> traj["next", "reward"].shape
        torch.Size([5, 16, 1])
    """

    def __init__(
        self,
        world_model: LatentWorldModel,
        *,
        device: torch.device | str | None = None,
        latent_key: NestedKey = "latent",
        reward_key: NestedKey = "reward",
        termination_key: NestedKey = "termination_logit",
    ) -> None:
        if device is None:
            device = next(world_model.parameters()).device
        wrapper = world_model_wrapper(
            world_model,
            latent_key=latent_key,
            reward_key=reward_key,
            termination_key=termination_key,
        )
        super().__init__(wrapper, device=device, allow_done_after_reset=True)
        self.latent_world_model = world_model
        self.latent_key, self.termination_key = latent_key, termination_key
        latent_dim, action_dim = world_model.latent_dim, world_model.action_dim
        observation = Composite({latent_key: Unbounded((latent_dim,), device=device)})
        if world_model.has_termination:
            observation[termination_key] = Unbounded((1,), device=device)
        self.observation_spec = observation
        self.state_spec = Composite({latent_key: Unbounded((latent_dim,), device=device)})
        self.action_spec = Bounded(-1.0, 1.0, (action_dim,), device=device)
        self.reward_spec = Composite({reward_key: Unbounded((1,), device=device)})

    def imagine(
        self,
        policy: Callable[[TensorDictBase], TensorDictBase],
        start: TensorDictBase,
        steps: int,
    ) -> TensorDictBase:
        """``steps`` imagined transitions from the ``start`` latents, stacked ``[*B, steps]``.

        The same trajectory as ``rollout(steps, policy, tensordict=start, auto_reset=True,
        break_when_any_done=False, return_contiguous=True)`` (same keys and values, the same
        random draws in the same order, the same autograd graph), from one loop that calls the
        world model's methods on tensors. ``rollout``'s per-step machinery (spec checks, done
        handling, ``step_mdp``) serves episodes that can end, which imagined ones never do; its
        Python calls at every step are part of a PWM iteration's wrapper overhead
        (docs/benchmarks.md).

        Args:
            policy: writes ``"action"`` (and anything else) into a tensordict holding the latent;
                called under the caller's exploration type.
            start: start latents ``[*B]`` under the latent key; gradients flow back to them.
            steps: number of transitions (>= 1).

        Returns:
            ``[*B, steps]``: the latent, termination logit (if the model has a head) and done
            flags of each step, the policy's outputs, and ``"next"`` with the next latent,
            reward, termination logit and done flags.

        Examples:
            >>> from torchrl_flowmbpo.modules import GaussianActor
            >>> from torchrl_flowmbpo.modules.models import PWMWorldModel
            >>> wm = PWMWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
            >>> env, actor = ImaginedLatentEnv(wm), GaussianActor(16, 2, hidden=(32,))
            >>> start = TensorDict(latent=wm.encode(torch.randn(5, 4)), batch_size=[5])
            >>> env.imagine(actor, start, 16)["next", "reward"].shape
            torch.Size([5, 16, 1])
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}.")
        wm = self.latent_world_model
        td = self.reset(start)
        done_flags = self.full_done_spec.zero(td.batch_size)
        # step_mdp's carry-over: what the next root keeps besides the next observation.
        dropped = ["next", self.action_key]
        frames = []
        for _ in range(steps):
            td = policy(td)
            latent, action = td.get(self.latent_key), td.get(self.action_key)
            next_latent, reward_output, logit = wm.transition(latent, action)
            next_td = TensorDict({self.latent_key: next_latent}, td.batch_size)
            if logit is not None:
                next_td.set(self.termination_key, logit)
            next_td.update(done_flags)
            next_td.set(self.reward_key, wm.decode_reward(reward_output))
            td.set("next", next_td)
            frames.append(td)
            td = td.exclude(*dropped).update(next_td.exclude(self.reward_key))
        # Leaf by leaf: a third of the Python calls of stacking the tensordicts.
        time_dim = start.ndim
        return TensorDict(
            {
                key: torch.stack([frame.get(key) for frame in frames], time_dim)
                for key in frames[0].keys(include_nested=True, leaves_only=True)
            },
            batch_size=(*start.batch_size, steps),
            device=self.device,
        )

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        if tensordict is None or self.latent_key not in tensordict.keys(include_nested=True):
            shape = self.batch_size if tensordict is None else tensordict.batch_size
            out = self._random_start(shape)
        else:
            # .select keeps the autograd link to the start latent.
            out = tensordict.select(self.latent_key)
        if self.latent_world_model.has_termination:
            out.set(self.termination_key, out.get(self.latent_key).new_zeros(*out.batch_size, 1))
        out.update(self.full_done_spec.zero(out.batch_size))
        return out

    def _random_start(self, shape: torch.Size) -> TensorDictBase:
        """Random on-manifold latents (a SimNorm of Gaussian noise), for spec checks."""
        out = self.state_spec.rand(shape)
        group = self.latent_world_model.simnorm_group
        latent = out.get(self.latent_key)
        grouped = latent.reshape(*latent.shape[:-1], -1, group).softmax(-1)
        out.set(self.latent_key, grouped.reshape(latent.shape))
        return out

    def any_done(self, tensordict: TensorDictBase) -> bool:
        # Imagined episodes never end; skipping the check avoids a host sync per step.
        return False

    def maybe_reset(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict

    def _set_seed(self, seed: int | None) -> None:
        """Imagination is seeded through torch's global RNG (the policy samples from it)."""
