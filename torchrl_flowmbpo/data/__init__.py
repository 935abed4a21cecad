"""Real transitions: the training loops' replay buffers and collector, and offline datasets
recorded in TorchRL storages, loaded as replay buffers."""

from torchrl_flowmbpo.data.datasets import (
    DATASET_KEYS,
    DatasetError,
    DatasetRecorder,
    held_out_split,
    load_dataset,
    make_slice_buffer,
    read_manifest,
)
from torchrl_flowmbpo.data.offline import add_offline_data
from torchrl_flowmbpo.data.replay import (
    POLICY_OUTPUTS,
    TRANSITION_KEYS,
    make_collector,
    make_slice_replay_buffer,
    make_transition_buffer,
    sample_slices,
    sample_start_observations,
    start_observations,
)

__all__ = [
    "DATASET_KEYS",
    "POLICY_OUTPUTS",
    "TRANSITION_KEYS",
    "DatasetError",
    "DatasetRecorder",
    "add_offline_data",
    "held_out_split",
    "load_dataset",
    "make_collector",
    "make_slice_buffer",
    "make_slice_replay_buffer",
    "make_transition_buffer",
    "read_manifest",
    "sample_slices",
    "sample_start_observations",
    "start_observations",
]
