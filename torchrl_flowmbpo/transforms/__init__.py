"""Transforms: reward normalisation and its running statistics (shared with ``ret_rms``)."""

from __future__ import annotations

from torchrl_flowmbpo.transforms.reward_norm import REWARD_NORM_MODES, RewardNormalization
from torchrl_flowmbpo.transforms.running_stats import RunningMeanStd

__all__ = ["REWARD_NORM_MODES", "RewardNormalization", "RunningMeanStd"]
