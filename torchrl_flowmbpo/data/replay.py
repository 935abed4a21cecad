"""Replay buffers and collectors of the training loops: ``[B, H]`` slices that never cross an
episode (PWM's world model and actor), single transitions (SAC), and the collector."""

from __future__ import annotations

from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer
from torchrl.envs import EnvBase, Transform

__all__ = [
    "POLICY_OUTPUTS",
    "TRANSITION_KEYS",
    "make_collector",
    "make_slice_replay_buffer",
    "make_transition_buffer",
    "sample_slices",
    "sample_start_observations",
    "start_observations",
]

#: Keys the collector's policy writes that no loss reads: the policy's latent and
#: action-distribution parameters, recomputed by every loss (storing them would take ~1 KB per
#: transition, 92 % of the buffer).
POLICY_OUTPUTS = ("latent", "loc", "scale", "cond")

#: Keys a transition needs in the buffer; episode trackers and collector metadata stay out.
TRANSITION_KEYS = (
    "observation",
    "action",
    ("next", "observation"),
    ("next", "reward"),
    ("next", "done"),
    ("next", "terminated"),
)


def make_slice_replay_buffer(
    size: int, horizon: int, *, transform: Transform | None = None, device: str = "cpu"
) -> TensorDictReplayBuffer:
    """Slices of H consecutive transitions that never cross an episode boundary.

    A row holds ``(o_t, a_t, next: (o_{t+1}, r_t, terminated_t))``, so H rows are the H + 1
    observations of an imagined rollout. An episode's terminal transition is its last row: a
    slice of H + 1 rows would only ever hold it in the row the losses drop, and the termination
    head would never see a fall.

    No batch size is set: every caller asks for its own (:func:`sample_slices`; the world model's
    and the actor's batches differ, and a constructor size that differs from a ``sample`` size
    makes TorchRL warn).

    Args:
        size: transitions kept (FIFO).
        horizon: rows per slice (H).

    Keyword Args:
        transform: applied to sampled batches (e.g. the reward normalisation).
        device: where the storage lives.

    Examples:
        >>> import torch
        >>> buffer = make_slice_replay_buffer(1000, 4)
        >>> data = TensorDict({"observation": torch.randn(2, 8, 3),
        ...     ("collector", "traj_ids"): torch.tensor([[0] * 8, [1] * 8])}, [2, 8])
        >>> _ = buffer.extend(data)
        >>> sample_slices(buffer, 3, 4).shape
        torch.Size([3, 4])
    """
    return TensorDictReplayBuffer(
        storage=LazyTensorStorage(size, ndim=2, device=device),
        sampler=SliceSampler(
            slice_len=horizon, traj_key=("collector", "traj_ids"), strict_length=True
        ),
        transform=transform,
    )


def sample_slices(replay_buffer: TensorDictReplayBuffer, count: int, horizon: int) -> TensorDict:
    """``count`` replay slices of ``horizon`` rows, shaped ``[count, horizon]``."""
    return replay_buffer.sample(batch_size=count * horizon).reshape(count, horizon)


def start_observations(slices: TensorDict) -> TensorDict:
    """The first observations of replay slices: states from which an episode goes on for at
    least a slice's length (never terminal), the actor's start states."""
    return slices[:, 0].select("observation")


def sample_start_observations(
    replay_buffer: TensorDictReplayBuffer, count: int, horizon: int
) -> TensorDict:
    """The start observations of ``count`` fresh replay slices of ``horizon`` rows."""
    return start_observations(sample_slices(replay_buffer, count, horizon))


def make_collector(
    env: EnvBase,
    policy: TensorDictModuleBase,
    *,
    frames_per_batch: int,
    total_frames: int,
    init_random_frames: int,
) -> Collector:
    """Steps every env ``frames_per_batch / num_envs`` times per batch with the sampling policy
    (pwm_flow: ``num_envs x H`` frames per batch)."""
    return Collector(
        env,
        policy,
        frames_per_batch=frames_per_batch,
        total_frames=total_frames,
        init_random_frames=init_random_frames,
        auto_register_policy_transforms=False,
    )


def make_transition_buffer(size: int, batch_size: int, device: str) -> TensorDictReplayBuffer:
    """Uniformly sampled FIFO buffer of single transitions (flattened collector batches)."""
    if size < 1 or batch_size < 1:
        raise ValueError(
            f"sac.buffer_size={size} and sac.batch_size={batch_size} must both be >= 1."
        )
    return TensorDictReplayBuffer(
        storage=LazyTensorStorage(size, device=device), batch_size=batch_size
    )
