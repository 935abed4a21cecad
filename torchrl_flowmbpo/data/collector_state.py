"""A collector's episodes in progress, captured and restored: what a checkpoint needs to resume
collection exactly where it stopped.

TorchRL's ``Collector.state_dict`` holds its frame and iteration counters and its trajectory
counter, but not the step it carries from one batch to the next (the ``_carrier`` TensorDict:
the current observation, done flags, the trackers of its transforms such as ``StepCounter``'s
``step_count`` and ``RewardSum``'s ``episode_reward``, the trajectory ids) nor the simulator
under the env: a collector restored from it restarts every episode from a reset.
:func:`collector_state` adds both (the task env's ``sim_state``, see
:class:`~torchrl_flowmbpo.envs.locomotion.batched.SimStateMixin`) and the state dicts of the
env's transforms; :func:`load_collector_state` puts them into a collector built afresh on a
fresh env of the same task, whose next batches are then bit-identical to those the captured
collector would have collected, given the same process RNGs (random frames and the sampling
policy draw from torch's) and the same policy weights (not included).

Examples:
    >>> import torch
    >>> from torchrl.envs import Compose, RewardSum, StepCounter, TransformedEnv
    >>> from torchrl.envs.utils import RandomPolicy
    >>> from torchrl_flowmbpo.data import make_collector
    >>> from torchrl_flowmbpo.envs.locomotion import make_env
    >>> def collector():
    ...     env = TransformedEnv(make_env("cartpole", num_envs=2, seed=0),
    ...                          Compose(StepCounter(), RewardSum()))
    ...     return make_collector(env, RandomPolicy(env.full_action_spec), frames_per_batch=6,
    ...                           total_frames=12, init_random_frames=0)
    >>> first = collector()
    >>> batches = iter(first)
    >>> _ = next(batches)
    >>> state, rng = collector_state(first), torch.get_rng_state()
    >>> expected = next(batches)
    >>> resumed = collector()
    >>> load_collector_state(resumed, state)
    >>> torch.set_rng_state(rng)
    >>> bool((next(iter(resumed)) == expected).all())
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tensordict import TensorDict
from torchrl.collectors import Collector
from torchrl.envs import EnvBase, TransformedEnv

__all__ = ["COLLECTOR_COUNTERS", "collector_state", "load_collector_state"]

#: The keys of TorchRL's ``Collector.state_dict`` a resume needs: the frame and iteration
#: counters and the trajectory counter (new trajectories must not reuse the ids of those in a
#: saved replay buffer, or its slices would join them). The policy's and the env's parts are
#: left out: the weights are saved with the run, the transforms' states below.
COLLECTOR_COUNTERS = ("frames", "iter", "traj_pool")


def _task_env(env: EnvBase) -> EnvBase:
    """The env under ``env``'s transforms."""
    while isinstance(env, TransformedEnv):
        env = env.base_env
    return env


def collector_state(collector: Collector) -> dict[str, Any]:
    """The state of ``collector`` between two batches, its episodes in progress included.

    Args:
        collector: a single-process TorchRL ``Collector`` over a batched task env (possibly in
            transforms), between two batches.

    Returns:
        ``COLLECTOR_COUNTERS`` of its ``state_dict``; ``"carrier"``: a copy of the step it
        carries into the next batch; ``"env"``: the task env's ``sim_state()``;
        ``"transforms"``: the state dict of the env's transforms (``{}`` without any). Tensors,
        TensorDicts and numbers only, for weights-only checkpoints. An env without
        ``sim_state`` (not one of the batched Newton tasks) gives the counters only.
    """
    state = collector.state_dict()
    captured = {key: state[key] for key in COLLECTOR_COUNTERS if key in state}
    env = collector.env
    task = _task_env(env)
    if hasattr(task, "sim_state"):
        captured["carrier"] = collector._carrier.clone()
        captured["env"] = task.sim_state()
        transforms = env.transform.state_dict() if isinstance(env, TransformedEnv) else {}
        captured["transforms"] = transforms
    return captured


def load_collector_state(collector: Collector, state: Mapping[str, Any]) -> None:
    """Puts a :func:`collector_state` into ``collector``, built afresh like the captured one (same
    task, settings, ``frames_per_batch``, ``total_frames`` and ``init_random_frames``).

    A state of counters only (what checkpoints of earlier versions hold) restores them alone:
    the collector then goes on from the reset it was built with, under new trajectory ids.

    Args:
        collector: the collector to restore, before its first batch.
        state: what :func:`collector_state` returned, possibly read back from a checkpoint
            (TensorDicts come back as nested dicts).
    """
    collector.load_state_dict(
        {key: state[key] for key in COLLECTOR_COUNTERS if key in state}, strict=False
    )
    if "carrier" not in state:
        return
    env = collector.env
    # load_state_dict drew new trajectory ids for the fresh carrier: the saved carrier keeps its
    # own, so the counter goes back to its saved value.
    if "traj_pool" in state:
        collector._traj_pool.load_state_dict(state["traj_pool"])
    _task_env(env).load_sim_state(TensorDict(state["env"], batch_size=[]))
    if isinstance(env, TransformedEnv):
        env.transform.load_state_dict(state["transforms"])
    # A copy on the env's device: a checkpoint's tensors are read-only memory maps on the CPU.
    carrier = TensorDict(state["carrier"], batch_size=env.batch_size).to(env.device).clone()
    if collector._carrier_has_no_device:
        carrier.clear_device_()
    collector._carrier = carrier
