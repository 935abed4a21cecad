"""Offline datasets of real transitions: recorded in TorchRL storages, loaded as replay buffers."""

from torchrl_flowmbpo.data.datasets import (
    DATASET_KEYS,
    DatasetError,
    DatasetRecorder,
    held_out_split,
    load_dataset,
    make_slice_buffer,
    read_manifest,
)

__all__ = [
    "DATASET_KEYS",
    "DatasetError",
    "DatasetRecorder",
    "held_out_split",
    "load_dataset",
    "make_slice_buffer",
    "read_manifest",
]
