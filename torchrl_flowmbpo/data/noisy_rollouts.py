"""Rollouts of a fixed policy with Gaussian action noise, recorded into an offline dataset
(``examples/build_dataset.py``)."""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import TensorSpec
from torchrl.envs import EnvBase, ExplorationType
from tqdm import tqdm

from torchrl_flowmbpo.data.datasets import DatasetRecorder

__all__ = ["GaussianActionNoise", "noisy_policy", "record_rollouts"]


class GaussianActionNoise(nn.Module):
    """``clip(action + noise_std * N(0, I), low, high)``: the exploration of the rollouts.

    Examples:
        >>> noise = GaussianActionNoise(0.0, -1.0, 1.0)
        >>> noise(torch.tensor([0.5, 2.0]))
        tensor([0.5000, 1.0000])
    """

    def __init__(self, noise_std: float, low: torch.Tensor | float, high: torch.Tensor | float):
        super().__init__()
        self.noise_std = noise_std
        self.register_buffer("low", torch.as_tensor(low))
        self.register_buffer("high", torch.as_tensor(high))

    def forward(self, action: torch.Tensor) -> torch.Tensor:
        noisy = action + self.noise_std * torch.randn_like(action)
        return torch.maximum(torch.minimum(noisy, self.high), self.low)


def noisy_policy(
    actor: TensorDictModuleBase, noise_std: float, action_spec: TensorSpec
) -> TensorDictSequential:
    """``actor`` (put in eval mode) followed by :class:`GaussianActionNoise` within the spec's
    bounds."""
    noise = GaussianActionNoise(noise_std, action_spec.space.low, action_spec.space.high)
    return TensorDictSequential(
        actor.eval(), TensorDictModule(noise, in_keys=["action"], out_keys=["action"])
    )


def record_rollouts(
    env: EnvBase,
    policy: TensorDictModuleBase,
    recorder: DatasetRecorder,
    *,
    frames: int,
    frames_per_batch: int,
) -> torch.Tensor:
    """Collects ``frames`` frames of ``policy`` into ``recorder``, committed after every batch
    (an interrupted part continues where it stopped); returns the finished episodes' returns.

    The policy acts deterministically (``tanh(mu)`` for a TanhNormal actor): the noise of
    :func:`noisy_policy` is the only exploration.
    """
    collector = Collector(
        env,
        policy,
        frames_per_batch=frames_per_batch,
        total_frames=frames,
        exploration_type=ExplorationType.DETERMINISTIC,
        auto_register_policy_transforms=False,
    )
    returns = []
    progress = tqdm(total=recorder.frames + frames, initial=recorder.frames, unit="frames")
    for data in collector:
        recorder.extend(data)
        recorder.commit()
        done = data["next", "done"].squeeze(-1)
        returns.append(data["next", "episode_reward"][done].flatten())
        progress.update(data.numel())
    progress.close()
    collector.shutdown()
    return torch.cat(returns)
