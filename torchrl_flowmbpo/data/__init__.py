"""Real transitions: the training loops' replay buffers and collector, and offline datasets
recorded in TorchRL storages, loaded as replay buffers."""

from torchrl_flowmbpo.data.collector_state import (
    COLLECTOR_COUNTERS,
    collector_state,
    load_collector_state,
)
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
    "COLLECTOR_COUNTERS",
    "DATASET_KEYS",
    "POLICY_OUTPUTS",
    "TRANSITION_KEYS",
    "DatasetError",
    "DatasetRecorder",
    "add_offline_data",
    "collector_state",
    "held_out_split",
    "load_collector_state",
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
