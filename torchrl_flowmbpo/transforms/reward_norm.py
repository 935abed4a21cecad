"""Reward normalisation with explicitly updated running statistics.

PWM standardises rewards, ``clip((r - mean) / sqrt(var + 1e-5), -5, 5)``, and updates its
statistics on every sampled batch, so a reward drawn k times is counted k times. Subtracting the
mean also changes the task when episodes can terminate early: once terminated, an episode earns 0,
while every step with a below-mean reward earns a negative amount, so ending early can look better
than continuing. The default here is therefore ``mode="scale"``, ``r / sqrt(var + 1e-5)``, which
keeps the sign of every reward, and the statistics change only through :meth:`update`, called once
on each batch of newly collected frames (docs/algorithm.md, "Normalisations").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey, unravel_key
from torch import Tensor
from torchrl.data import Composite, Unbounded
from torchrl.envs.transforms import Transform

from torchrl_flowmbpo.transforms.running_stats import RunningMeanStd

__all__ = ["REWARD_NORM_MODES", "RewardNormalization"]

REWARD_NORM_MODES = ("none", "scale", "standardize")
# PWM's clip for standardised rewards, used when ``clip`` is left to None in that mode.
_STANDARDIZE_DEFAULT_CLIP = 5.0


def _strip_next(key: NestedKey) -> NestedKey:
    """Maps a transition key such as ``("next", "reward")`` to ``"reward"``."""
    key = unravel_key(key)
    if isinstance(key, tuple) and key[0] == "next":
        return unravel_key(key[1:])
    return key


class RewardNormalization(Transform):
    """Normalises rewards with running statistics that change only on an explicit :meth:`update`.

    Three modes, with ``std = sqrt(var + eps)`` from the running statistics:

    - ``"scale"`` (default): ``r / std``. No mean is subtracted, so the sign of every reward and
      the ordering of returns of different lengths are kept; no clipping unless ``clip`` is set.
    - ``"standardize"``: ``clip((r - mean) / std, -c, c)`` with ``c = clip``, or 5 (PWM) when
      ``clip`` is None; pass ``clip=math.inf`` to disable clipping.
    - ``"none"``: identity.

    The statistics (a :class:`~torchrl_flowmbpo.transforms.RunningMeanStd` over every reward
    element, in :attr:`stats`) are **never** updated by a forward call. Call :meth:`update` (or
    :meth:`update_from`) on each batch of newly collected frames so that each reward is counted
    once, keep the replay buffer raw, and normalise sampled batches with the current statistics.
    The statistics are buffers: they are saved by ``state_dict()`` and load with
    ``torch.load(..., weights_only=True)``.

    Keys are given as in a transition tensordict (``("next", "reward")``), which is what a replay
    buffer samples and what :meth:`forward` and :meth:`update_from` read. Inside a
    :class:`~torchrl.envs.TransformedEnv` the transform sees the ``"next"`` sub-tensordict, so a
    leading ``"next"`` is dropped there. An out-key other than the in-key keeps the raw reward for
    logging; in an env it becomes a second reward entry of the reward spec (as with
    :class:`~torchrl.envs.VecNormV2`), so use ``env.reward_keys`` rather than ``env.reward_key``.

    Args:
        mode: one of ``"none"``, ``"scale"``, ``"standardize"``. Default ``"scale"``.

    Keyword Args:
        clip: bound ``c`` on the normalised reward, applied as ``[-c, c]``. Default None: no
            clipping in ``"scale"`` mode, 5 in ``"standardize"`` mode. Must be None in
            ``"none"`` mode (use :class:`~torchrl.envs.RewardClipping` to clip raw rewards).
        eps: added to the variance before the square root. Default ``1e-5`` (PWM).
        in_keys: the raw reward key, a list of one. Default ``[("next", "reward")]``.
        out_keys: where the normalised reward is written, a list of one. Default: ``in_keys``
            (in place).
        frozen: if True, :meth:`update` leaves the statistics unchanged. Default False.

    Examples:
        >>> from tensordict import TensorDict
        >>> t = RewardNormalization(out_keys=[("next", "reward_norm")])
        >>> batch = TensorDict(
        ...     {"next": {"reward": torch.tensor([[-2.0], [0.0], [2.0], [4.0]])}}, batch_size=[4]
        ... )
        >>> t.update_from(batch)  # newly collected frames: count each reward once
        >>> t.scale  # sqrt(var + eps), var ~ 5 from the data and the 1e-4 prior
        tensor(2.2361, dtype=torch.float64)
        >>> t(batch)["next", "reward_norm"].squeeze(-1)  # sign and zero are kept
        tensor([-0.8944,  0.0000,  0.8944,  1.7889])
        >>> t(batch)["next", "reward"].squeeze(-1)  # the raw reward stays for logging
        tensor([-2.,  0.,  2.,  4.])
        >>> t.stats.count  # applying the transform did not count the rewards again
        tensor(4.0001, dtype=torch.float64)
    """

    def __init__(
        self,
        mode: str = "scale",
        *,
        clip: float | None = None,
        eps: float = 1e-5,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        frozen: bool = False,
    ) -> None:
        if mode not in REWARD_NORM_MODES:
            raise ValueError(
                f"Unknown reward normalisation mode {mode!r}; expected one of {REWARD_NORM_MODES}."
            )
        if mode == "none" and clip is not None:
            raise ValueError(
                f"clip={clip} has no effect with mode='none'; use torchrl's RewardClipping to "
                "clip raw rewards."
            )
        if clip is not None and clip <= 0:
            raise ValueError(f"clip must be > 0 or None, got {clip}.")
        if in_keys is None:
            in_keys = [("next", "reward")]
        if out_keys is None:
            out_keys = list(in_keys)
        super().__init__(in_keys=in_keys, out_keys=out_keys)
        if len(self.in_keys) != 1 or len(self.out_keys) != 1:
            # One set of statistics describes one reward stream.
            raise ValueError(
                f"Expected one in-key and one out-key, got {self.in_keys} and {self.out_keys}."
            )
        self.mode = mode
        if clip is None and mode == "standardize":
            clip = _STANDARDIZE_DEFAULT_CLIP
        self.clip = clip
        self.eps = eps
        self.frozen = frozen
        self.stats = RunningMeanStd()

    @property
    def loc(self) -> Tensor:
        """The value subtracted before scaling: the running mean in ``"standardize"``, else 0."""
        if self.mode == "standardize":
            return self.stats.mean
        return torch.zeros_like(self.stats.mean)

    @property
    def scale(self) -> Tensor:
        """The divisor: ``sqrt(var + eps)``, or 1 in ``"none"`` mode."""
        if self.mode == "none":
            return torch.ones_like(self.stats.var)
        return (self.stats.var + self.eps).sqrt()

    def update(self, rewards: Tensor) -> None:
        """Merges newly collected rewards into the statistics (no-op when :attr:`frozen`).

        Args:
            rewards: raw rewards of any shape; every element is one sample. Pass each collected
                frame once, and never sampled (possibly repeated) replay batches.
        """
        if not self.frozen:
            self.stats.update(rewards)

    def update_from(self, tensordict: TensorDictBase) -> None:
        """Calls :meth:`update` with the raw reward of a batch of collected transitions.

        Args:
            tensordict: collected data holding ``in_keys[0]`` (e.g. a collector batch).
        """
        self.update(tensordict.get(self.in_keys[0]))

    def freeze(self) -> RewardNormalization:
        """Stops :meth:`update` from changing the statistics; returns ``self``."""
        self.frozen = True
        return self

    def unfreeze(self) -> RewardNormalization:
        """Lets :meth:`update` change the statistics again; returns ``self``."""
        self.frozen = False
        return self

    def _apply_transform(self, reward: Tensor) -> Tensor:
        if self.mode == "none":
            return reward
        reward = self.stats.normalize(reward, center=self.mode == "standardize", eps=self.eps)
        if self.clip is not None:
            reward = reward.clamp(-self.clip, self.clip)
        return reward

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        # Env path: the tensordict is the "next" one, so read and write the keys without "next".
        reward = next_tensordict.get(_strip_next(self.in_keys[0]), None)
        if reward is not None:
            next_tensordict.set(_strip_next(self.out_keys[0]), self._apply_transform(reward))
        elif not self.missing_tolerance:
            raise KeyError(f"{self}: '{self.in_keys[0]}' not found in {next_tensordict}")
        return next_tensordict

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        # Only the reward spec changes. The base method would also check the out-key against the
        # spec with its leading "next", which specs never have.
        output_spec = output_spec.clone()
        output_spec["full_reward_spec"] = self.transform_reward_spec(
            output_spec["full_reward_spec"]
        )
        return output_spec

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        in_key = _strip_next(self.in_keys[0])
        if in_key in reward_spec.keys(True, True):
            spec = reward_spec[in_key]
            # Normalised rewards are unbounded floats whatever the raw reward's bounds.
            reward_spec[_strip_next(self.out_keys[0])] = Unbounded(
                shape=spec.shape, device=spec.device, dtype=spec.dtype
            )
        return reward_spec

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mode={self.mode!r}, clip={self.clip}, eps={self.eps}, "
            f"frozen={self.frozen}, in_keys={self.in_keys}, out_keys={self.out_keys})"
        )
