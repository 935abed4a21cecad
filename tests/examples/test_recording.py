"""dataset.record=PATH in sac_baseline.py and pwm_flow.py: every collected frame lands in the
dataset, committed with the run's checkpoint, and a second run cannot write over the first."""

from __future__ import annotations

import sys

import pytest

from torchrl_flowmbpo.data import DATASET_KEYS, load_dataset
from torchrl_flowmbpo.trainers import load_checkpoint

#: sac_baseline.py: 5 iterations of 64 frames on 4 cartpoles; pwm_flow.py: 4 of 64 (4 x H=16).
RUNS = {
    "sac_baseline.py": (
        "env=cartpole env.num_envs=4 +env.kwargs.episode_length=50 collector.frames_per_batch=64 "
        "collector.total_frames=320 sac.init_random_frames=128 sac.batch_size=32 "
        "sac.utd_ratio=0.1 sac.hidden_sizes=[32,32] eval.episodes=1 eval.num_envs=1 "
        "checkpoint.interval=2 logger=none threads=1"
    ),
    "pwm_flow.py": (
        "env=cartpole_balance env.num_envs=4 +env.kwargs.episode_length=50 "
        "collector.total_frames=256 collector.init_random_frames=128 algo.wm_warmup_steps=2 "
        "algo.wm_batch_slices=8 world_model=mlp eval.episodes=1 eval.num_envs=1 logger=none "
        "diagnostics.interval=0 checkpoint.interval=2 threads=1"
    ),
}


@pytest.fixture(scope="module")
def recorded(scripts, tmp_path_factory):
    """``{script: (first run, its dataset path, a second run into the same part)}``."""
    pending_run = sys.modules[type(scripts).__module__].PendingRun
    out = {}
    for script, args in RUNS.items():
        root = tmp_path_factory.mktemp(script.split(".")[0])
        dataset = root / "ds"
        full = f"{args} dataset.record={dataset} hydra.run.dir={root / 'run'}".split()
        out[script] = (pending_run(script, full, root, root / "run"), dataset)
    results = {}
    for script, (pending, dataset) in out.items():
        first = pending.result().check()
        root = first.run_dir.parent
        again = f"{RUNS[script]} dataset.record={dataset} hydra.run.dir={root / 'other'}"
        second = pending_run(script, again.split(), root / "again", root / "other").result()
        results[script] = (first, dataset, second)
    return results


@pytest.mark.parametrize("script", RUNS)
def test_every_frame_is_recorded_with_the_run(recorded, script):
    first, dataset, _ = recorded[script]
    frames = load_checkpoint(first.run_dir)["counters"]["frames"]
    data, manifest = load_dataset(dataset)
    assert data.shape == (4, frames // 4)
    assert set(data.keys(include_nested=True, leaves_only=True)) == set(DATASET_KEYS)
    (part,) = manifest["parts"]
    assert part["frames"] == frames and part["source"]["run_dir"] == str(first.run_dir)
    assert manifest["task"] == "cartpole" and manifest["obs_dim"] == 5
    # Every episode ends in a done or at the end of the recording.
    ids = data["collector", "traj_ids"]
    done = data["next", "done"].squeeze(-1)
    assert part["episodes"] == len(ids.unique()) == int(done[:, :-1].sum()) + 4


@pytest.mark.parametrize("script", RUNS)
def test_a_new_run_cannot_write_into_a_recorded_part(recorded, script):
    _, _, second = recorded[script]
    assert second.returncode == 1
    assert "holds" in second.stderr and "but the run is at frame 0" in second.stderr
