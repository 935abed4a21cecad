"""A replay buffer's state without its unwritten rows, for checkpoints.

A :class:`~torchrl.data.LazyTensorStorage` allocates its whole capacity at the first write, and
its ``state_dict`` holds all of it: a run with a million-transition buffer that has seen a few
thousand frames would checkpoint hundreds of MiB of uninitialised memory. :func:`compact_state`
keeps the rows written so far (all of them once the buffer has wrapped around) and
:func:`load_compact_state` pads them back to the capacity before handing the state to
``load_state_dict``, so the restored buffer samples, and keeps filling, exactly as the saved one.

Examples:
    >>> import torch
    >>> from torchrl.data import LazyTensorStorage, ReplayBuffer
    >>> buffer = ReplayBuffer(storage=LazyTensorStorage(1000), batch_size=4)
    >>> _ = buffer.extend(torch.arange(10.0))
    >>> state = compact_state(buffer)
    >>> state["_storage"]["_storage"].shape
    torch.Size([10])
    >>> restored = ReplayBuffer(storage=LazyTensorStorage(1000), batch_size=4)
    >>> load_compact_state(restored, state)
    >>> len(restored), restored[:3].tolist(), restored.storage._storage.shape
    (10, [0.0, 1.0, 2.0], torch.Size([1000]))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import copy
from typing import Any

import torch
from torchrl.data import LazyTensorStorage

__all__ = ["compact_state", "load_compact_state"]

#: The storage's full leading size, recorded beside the written rows.
_CAPACITY = "capacity_dim0"


def _map(tree: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``tree`` with ``fn`` applied to its tensors; mappings keep their ``_metadata``."""
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, Mapping):
        out = copy(tree)  # the same mapping type, with its attributes (TensorDict metadata)
        for key, value in tree.items():
            out[key] = _map(value, fn)
        return out
    return tree


def compact_state(buffer: Any) -> dict[str, Any]:
    """``buffer.state_dict()`` holding only the written rows of a tensor storage."""
    state = buffer.state_dict()
    storage = buffer.storage
    if not isinstance(storage, LazyTensorStorage) or not storage.initialized:
        return state
    # TorchRL keeps the written length and the capacity private.
    rows = storage._len_along_dim0
    capacity = storage._storage.shape[0]
    storage_state = dict(state["_storage"])
    storage_state["_storage"] = _map(storage_state["_storage"], lambda t: t[:rows].clone())
    storage_state[_CAPACITY] = capacity
    state["_storage"] = storage_state
    return state


def load_compact_state(buffer: Any, state: Mapping[str, Any]) -> None:
    """Restores a :func:`compact_state` (or a plain ``state_dict``) into ``buffer``."""
    state = dict(state)
    storage_state = dict(state["_storage"])
    capacity = storage_state.pop(_CAPACITY, None)
    if capacity is not None:

        def pad(tensor: torch.Tensor) -> torch.Tensor:
            missing = capacity - tensor.shape[0]
            return torch.cat((tensor, tensor.new_empty((missing, *tensor.shape[1:]))))

        storage_state["_storage"] = _map(storage_state["_storage"], pad)
    state["_storage"] = storage_state
    buffer.load_state_dict(state)
