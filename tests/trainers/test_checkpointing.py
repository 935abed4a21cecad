"""trainers.checkpointing: TorchRL archives with rotation, a manifest, and a fallback that sets
bad newest checkpoints aside (truncated, foreign, stray, non-finite, killed mid-write)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

import torchrl_flowmbpo
from torchrl_flowmbpo.data import make_slice_replay_buffer, sample_slices
from torchrl_flowmbpo.trainers.checkpointing import (
    SET_ASIDE,
    CheckpointSchedule,
    LegacyCheckpointError,
    NonFiniteStateError,
    RunCheckpoints,
    capture_rng,
    read_checkpoint,
    restore_rng,
)
from torchrl_flowmbpo.trainers.migrate import migrate_legacy_checkpoint


def _run_state(step: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {
        "modules": {"actor": net.state_dict()},
        "optimizers": {"actor": opt.state_dict()},
        "counters": {"iteration": step, "frames": 64 * step},
        "history": {"eval/return": [[64.0, 1.5]]},
    }


@pytest.fixture
def warnings_seen():
    return []


@pytest.fixture
def checkpoints(tmp_path, warnings_seen):
    return RunCheckpoints(tmp_path / "checkpoints", keep_last=2, warn=warnings_seen.append)


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def test_round_trip_is_exact_and_the_manifest_records_versions_and_config(checkpoints):
    state = _run_state(4)
    config = {"seed": 0, "algo": {"lr": 0.001, "layers": [64, 64]}}
    path = checkpoints.save({"run": state}, step=4, metadata={"config": config, "frames": 256})
    assert path.name == "checkpoint-000000000004.torchrl" and zipfile.is_zipfile(path)
    names = zipfile.ZipFile(path).namelist()
    assert not [n for n in names if n.endswith((".pt", ".pkl"))]  # no pickle payload at all
    states, manifest = read_checkpoint(path)
    _assert_same(states["run"], state)
    meta = manifest["metadata"]
    assert meta["config"] == config and meta["step"] == 4 and meta["frames"] == 256
    assert meta["package"] == {"name": "torchrl_flowmbpo", "version": torchrl_flowmbpo.__version__}
    assert manifest["versions"]["torchrl"] and manifest["versions"]["torch"]


def test_rotation_keeps_the_last_few_and_the_best_by_evaluation_return(checkpoints):
    returns = [None, 9.0, 2.0, 3.0, float("nan"), 4.0]
    for step, ret in enumerate(returns, start=1):
        checkpoints.save({"run": _run_state(step)}, step=step, metadata={"eval_return": ret})
    kept = [int(p.name[11:23]) for p in checkpoints.candidates()]
    assert kept == [6, 5, 2]  # the last two and the best (9.0 at step 2)


def test_non_finite_weights_are_never_written(checkpoints):
    checkpoints.save({"run": _run_state(1)}, step=1)
    bad = _run_state(2)
    bad["modules"]["actor"]["0.weight"][0, 0] = float("nan")
    with pytest.raises(NonFiniteStateError, match=r"modules\.actor\.0\.weight"):
        checkpoints.save({"run": bad}, step=2)
    assert [p.name for p in checkpoints.candidates()] == ["checkpoint-000000000001.torchrl"]
    assert not [p for p in checkpoints.directory.iterdir() if p.name.startswith(".")]


def _two_checkpoints(checkpoints):
    for step in (1, 2):
        checkpoints.save({"run": _run_state(step, seed=step)}, step=step)
    return checkpoints.candidates()[0]


@pytest.mark.parametrize(
    "spoil, reason",
    [
        (
            lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
            "not a TorchRL checkpoint",
        ),
        (lambda p: p.write_text("hello"), "not a TorchRL checkpoint"),
        (lambda p: p.write_bytes(b""), "not a TorchRL checkpoint"),
    ],
    ids=["truncated", "text", "empty"],
)
def test_a_bad_newest_checkpoint_is_set_aside_and_the_previous_one_resumes(
    checkpoints, warnings_seen, spoil, reason
):
    newest = _two_checkpoints(checkpoints)
    spoil(newest)
    path, states, _ = checkpoints.load_newest_valid()
    assert path.name == "checkpoint-000000000001.torchrl"
    assert states["run"]["counters"]["iteration"] == 1
    assert (checkpoints.directory / SET_ASIDE / newest.name).is_file()  # kept, not deleted
    assert not newest.exists()
    (warning,) = warnings_seen
    assert "\n" not in warning and newest.name in warning and reason in warning


def test_a_truncated_payload_behind_a_good_manifest_is_set_aside(checkpoints, warnings_seen):
    newest = _two_checkpoints(checkpoints)
    with zipfile.ZipFile(newest) as src:
        members = {n: src.read(n) for n in src.namelist()}
    with zipfile.ZipFile(newest, "w") as dst:
        for name, data in members.items():
            dst.writestr(name, data[: len(data) // 2] if name.endswith(".memmap") else data)
    path, _, _ = checkpoints.load_newest_valid()
    assert path.name == "checkpoint-000000000001.torchrl"
    (warning,) = warnings_seen
    assert "\n" not in warning and "run payload is not the one saved" in warning


def test_a_stray_copy_is_never_trusted(checkpoints, warnings_seen):
    """A copy of step 1 in a sub-folder is not read; one renamed to step 999 is set aside."""
    _two_checkpoints(checkpoints)
    first = checkpoints.directory / "checkpoint-000000000001.torchrl"
    (checkpoints.directory / "backup").mkdir()
    shutil.copy(first, checkpoints.directory / "backup" / "checkpoint-000000000999.torchrl")
    assert checkpoints.load_newest_valid()[0].name == "checkpoint-000000000002.torchrl"
    assert not warnings_seen
    shutil.copy(first, checkpoints.directory / "checkpoint-000000000999.torchrl")
    path, states, _ = checkpoints.load_newest_valid()
    assert path.name == "checkpoint-000000000002.torchrl"
    assert states["run"]["counters"]["iteration"] == 2
    assert "contents are step 1, its name says 999" in warnings_seen[0]


def test_a_checkpoint_holding_code_is_refused_and_set_aside(checkpoints, warnings_seen):
    """A torch-format payload holding an object is refused by weights-only loading."""
    from torchrl.checkpoint import Checkpoint, StateDictCheckpointAdapter

    _two_checkpoints(checkpoints)

    class Payload:
        def state_dict(self):
            return {"evil": os.system}  # a global that weights-only loading blocks

    Checkpoint(format="archive").register(
        "run", Payload(), adapter=StateDictCheckpointAdapter("torch")
    ).save(checkpoints.directory / "checkpoint-000000000003.torchrl", metadata={"step": 3})
    path, _, _ = checkpoints.load_newest_valid()
    assert path.name == "checkpoint-000000000002.torchrl"
    (warning,) = warnings_seen
    assert "checkpoint-000000000003.torchrl" in warning and "\n" not in warning
    assert "posix.system" in warning or "os.system" in warning, warning


def test_non_finite_contents_are_set_aside(checkpoints, warnings_seen):
    from torchrl.checkpoint import Checkpoint

    from torchrl_flowmbpo.trainers.checkpointing import _State

    _two_checkpoints(checkpoints)
    bad = _run_state(3)
    bad["modules"]["actor"]["2.bias"][:] = float("inf")
    Checkpoint(format="archive", run=_State(bad)).save(
        checkpoints.directory / "checkpoint-000000000003.torchrl", metadata={"step": 3}
    )
    assert checkpoints.load_newest_valid()[0].name == "checkpoint-000000000002.torchrl"
    assert "non-finite" in warnings_seen[0] and "modules.actor.2.bias" in warnings_seen[0]


_KILL_MID_WRITE = """
import os, signal, sys, torch
from torchrl.checkpoint import StateDictCheckpointAdapter
from torchrl_flowmbpo.trainers.checkpointing import RunCheckpoints
checkpoints = RunCheckpoints(sys.argv[1], keep_last=2)
checkpoints.save({"run": {"w": torch.ones(1000)}}, step=1)
save = StateDictCheckpointAdapter.save
def save_then_die(self, component, path, **kwargs):
    save(self, component, path, **kwargs)  # one component's payload is on disk, the rest not
    os.kill(os.getpid(), signal.SIGKILL)
StateDictCheckpointAdapter.save = save_then_die
checkpoints.save({"run": {"w": torch.zeros(1000)}, "rng": {"x": torch.ones(1)}}, step=2)
"""


def test_kill_9_mid_write_leaves_the_previous_checkpoint_and_leftovers_are_removed(tmp_path):
    directory = tmp_path / "checkpoints"
    done = subprocess.run([sys.executable, "-c", _KILL_MID_WRITE, str(directory)], timeout=120)
    assert done.returncode == -signal.SIGKILL
    leftovers = [p for p in directory.iterdir() if p.name.startswith(".")]
    assert leftovers  # the killed write's staging folder
    checkpoints = RunCheckpoints(directory)
    assert set(checkpoints.remove_leftovers()) == set(leftovers)
    assert [p.name for p in directory.iterdir()] == ["checkpoint-000000000001.torchrl"]
    _, states, _ = checkpoints.load_newest_valid()
    assert torch.equal(states["run"]["w"], torch.ones(1000))


def test_old_checkpoints_are_named_and_can_be_migrated(tmp_path):
    directory = tmp_path / "checkpoints"
    state = _run_state(5)
    directory.mkdir()
    torch.save(state, directory / "checkpoint_5.pt")  # what earlier versions wrote
    checkpoints = RunCheckpoints(directory)
    with pytest.raises(LegacyCheckpointError) as err:
        checkpoints.load_newest_valid()
    message = str(err.value)
    assert "\n" not in message and "checkpoint_5.pt" in message and "torch.save format" in message
    new = migrate_legacy_checkpoint(directory / "checkpoint_5.pt")
    path, states, manifest = checkpoints.load_newest_valid()
    assert path == new and manifest["metadata"]["migrated_from"] == "checkpoint_5.pt"
    _assert_same(states["run"], state)
    assert (directory / "checkpoint_5.pt").is_file()  # the old file is kept


def test_migration_cli(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    torch.save(_run_state(3), directory / "checkpoint_3.pt")
    module = "torchrl_flowmbpo.trainers.migrate"
    out = subprocess.run(
        [sys.executable, "-m", module, str(directory)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert (directory / "checkpoint-000000000003.torchrl").is_file()


def test_replay_buffer_and_rng_resume_the_same_samples(checkpoints):
    buffer = make_slice_replay_buffer(1000, 4)
    ids = torch.arange(4).repeat_interleave(8).reshape(4, 8)
    buffer.extend(
        TensorDict({"observation": torch.randn(4, 8, 3), ("collector", "traj_ids"): ids}, [4, 8])
    )
    env_rng = torch.Generator().manual_seed(7)
    torch.manual_seed(11)
    states = {"run": {}, "rng": capture_rng({"env": env_rng}), "replay_buffer": buffer.state_dict()}
    checkpoints.save(states, step=1)
    expected = sample_slices(buffer, 3, 4)["observation"], torch.rand(2, generator=env_rng)

    restored = make_slice_replay_buffer(1000, 4)
    other_rng = torch.Generator().manual_seed(0)
    torch.manual_seed(99)
    _, loaded, _ = checkpoints.load_newest_valid()
    restored.load_state_dict(loaded["replay_buffer"])
    restore_rng(loaded["rng"], {"env": other_rng})
    assert len(restored) == len(buffer)
    assert torch.equal(sample_slices(restored, 3, 4)["observation"], expected[0])
    assert torch.equal(torch.rand(2, generator=other_rng), expected[1])


def test_reading_the_run_state_alone_skips_the_buffer(checkpoints):
    checkpoints.save({"run": {"w": torch.ones(2)}, "replay_buffer": {"x": torch.ones(3)}}, step=1)
    states, manifest = read_checkpoint(checkpoints.candidates()[0], ("run",))
    assert list(states) == ["run"] and set(manifest["components"]) == {"run", "replay_buffer"}


def test_the_schedule_checkpoints_by_wall_clock_as_well_as_iterations():
    now = [0.0]
    schedule = CheckpointSchedule(100, 5.0, clock=lambda: now[0])
    assert [schedule.due(i) for i in (1, 99, 100)] == [False, False, True]
    now[0] = 299.0
    assert not schedule.due(101)
    now[0] = 300.0
    assert schedule.due(102)
    schedule.saved()
    assert not schedule.due(103)


def test_manifest_is_plain_json(checkpoints):
    path = checkpoints.save({"run": {"w": torch.ones(1)}}, step=3, metadata={"frames": 9})
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["format"] == "torchrl.checkpoint" and manifest["metadata"]["frames"] == 9
    assert Path(path).parent == checkpoints.directory
