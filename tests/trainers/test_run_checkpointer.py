"""trainers.run_checkpointer: a resume restores everything a run needs, so a toy loop killed with
SIGKILL and resumed ends with bit-identical weights; config changes and old runs are handled."""

from __future__ import annotations

import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from torchrl_flowmbpo.trainers.checkpointing import read_checkpoint
from torchrl_flowmbpo.trainers.run_checkpointer import (
    ConfigChangedError,
    RunCheckpointer,
    env_generators,
)

#: A toy loop with every ingredient of a training run: a replay buffer sampled with the torch
#: RNG, data from torch/NumPy/Python RNGs and an env-like generator, Adam and an LR schedule.
TOY_LOOP = """
import os, random, signal, sys
import numpy as np, torch
from omegaconf import OmegaConf
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from tensordict import TensorDict
from torchrl_flowmbpo.trainers.run_checkpointer import RunCheckpointer

run_dir, kill_at, total = sys.argv[1], int(sys.argv[2]), 12
cfg = OmegaConf.create({"seed": 0, "variant": "toy", "lr": 0.01, "checkpoint": {"interval": 3,
    "every_minutes": 1e9, "keep_last": 3, "max_buffer_mb": 64, "max_skipped_iterations": 5}})
torch.manual_seed(0); np.random.seed(0); random.seed(0)
net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.1, total_iters=total)
buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(1000), batch_size=16)
env_rng = torch.Generator().manual_seed(1)
counters, history = {"iteration": 0}, {"loss": []}
ckpt = RunCheckpointer(os.path.join(run_dir, "checkpoints"), cfg, {"net": net}, {"net": opt},
    counters=counters, history=history, specs={}, schedulers={"net": sched},
    replay_buffer=buffer, generators={"env": env_rng})
ckpt.resume()
ckpt.restore_rng()
while counters["iteration"] < total:
    x = torch.randn(8, 4, generator=env_rng) + float(np.random.rand()) + random.random()
    buffer.extend(TensorDict({"x": x, "y": x.sum(-1, keepdim=True)}, [8]))
    batch = buffer.sample()
    loss = (net(batch["x"]) - batch["y"]).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    counters["iteration"] += 1
    history["loss"].append([counters["iteration"], float(loss)])
    if ckpt.due():
        ckpt.save()
    if counters["iteration"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
ckpt.save(finished=True)
torch.save({k: v.clone() for k, v in net.state_dict().items()}, os.path.join(run_dir, "w.pt"))
"""


#: The ``checkpoint`` keys of a run config (``configs/config.yaml``), every 2 iterations.
CHECKPOINT_KEYS = {
    "interval": 2,
    "every_minutes": 1e9,
    "keep_last": 3,
    "max_buffer_mb": 64,
    "max_skipped_iterations": 5,
}


def _toy(run_dir, kill_at: int) -> int:
    args = [sys.executable, "-c", TOY_LOOP, str(run_dir), str(kill_at)]
    return subprocess.run(args, timeout=300).returncode


def test_a_toy_run_killed_and_resumed_ends_with_bit_identical_weights(tmp_path):
    assert _toy(tmp_path / "straight", kill_at=-1) == 0
    # Killed after the checkpoint of iteration 6 and again between checkpoints (iteration 8).
    assert _toy(tmp_path / "killed", kill_at=6) == -signal.SIGKILL
    assert _toy(tmp_path / "killed", kill_at=8) == -signal.SIGKILL
    assert _toy(tmp_path / "killed", kill_at=-1) == 0
    straight = torch.load(tmp_path / "straight" / "w.pt", weights_only=True)
    resumed = torch.load(tmp_path / "killed" / "w.pt", weights_only=True)
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name


def _checkpointer(run_dir, **overrides):
    cfg = OmegaConf.create({"seed": 0, "variant": "toy", "lr": 0.01, "threads": 1})
    cfg.checkpoint = CHECKPOINT_KEYS
    cfg.merge_with(overrides)
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    counters = {"iteration": 0, "frames": 0}
    seen = []
    ckpt = RunCheckpointer(
        run_dir / "checkpoints",
        cfg,
        {"net": net},
        {"net": opt},
        counters=counters,
        history={"eval/return": []},
        specs={"net": {"in": 3}},
        warn=seen.append,
    )
    return ckpt, net, seen


def test_a_changed_config_is_refused_naming_the_keys(tmp_path):
    first, _, _ = _checkpointer(tmp_path)
    first.counters["iteration"] = 2
    first.save()
    second, _, _ = _checkpointer(tmp_path, lr=0.5, threads=4)
    with pytest.raises(ConfigChangedError, match=r"lr: 0\.01 there, 0\.5 now") as err:
        second.resume()
    assert "threads" not in str(err.value).split("Keys a resume")[0]
    assert first.checkpoints.candidates()  # the checkpoint is kept, not set aside


def test_the_finished_flag_and_the_counters_come_back(tmp_path):
    first, net, _ = _checkpointer(tmp_path)
    first.counters.update(iteration=4, frames=256)
    first.history["eval/return"].append([256, 3.5])
    first.save(finished=True)
    second, other, _ = _checkpointer(tmp_path)
    torch.nn.init.zeros_(other.weight)
    assert second.resume() == first.last_path and second.finished
    assert second.counters == {"iteration": 4, "frames": 256}
    assert second.history == {"eval/return": [[256, 3.5]]}
    assert torch.equal(other.weight, net.weight)


def test_a_buffer_over_the_limit_is_not_saved_and_the_loss_is_said_once(tmp_path):
    from torchrl.data import LazyTensorStorage, ReplayBuffer

    ckpt, _, seen = _checkpointer(tmp_path)
    ckpt.replay_buffer = ReplayBuffer(storage=LazyTensorStorage(100_000))
    ckpt.replay_buffer.extend(torch.zeros(10, 8))
    ckpt.max_buffer_bytes = 1024
    ckpt.counters["iteration"] = 2
    saved = ckpt.save()  # 10 rows of 8 floats: only the written rows count, not the capacity
    assert read_checkpoint(saved)[0]["replay_buffer"]["_storage"]["_storage"].shape == (10, 8)
    ckpt.replay_buffer.extend(torch.zeros(100, 8))
    ckpt.counters["iteration"] = 4
    path = ckpt.save()
    assert "replay_buffer" not in read_checkpoint(path)[0]
    (note,) = seen
    assert "max_buffer_mb" in note and "init_random_frames" in note


def test_evaluated_weights_are_checkpointed_with_their_return(tmp_path):
    ckpt, _, _ = _checkpointer(tmp_path)
    ckpt.counters.update(iteration=1, frames=64)
    assert not ckpt.due()  # interval 2
    ckpt.history["eval/return"].append([64, 7.5])
    assert ckpt.due()
    path = ckpt.save()
    ckpt.counters.update(iteration=2, frames=128)
    assert ckpt.evaluation_now() is None  # the evaluation was of older weights
    assert read_checkpoint(path)[1]["metadata"]["eval_return"] == 7.5
    assert "eval_return" not in read_checkpoint(ckpt.save())[1]["metadata"]


def test_rng_states_are_restored_only_when_asked(tmp_path):
    ckpt, _, _ = _checkpointer(tmp_path)
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    ckpt.counters["iteration"] = 2
    ckpt.save()
    expected = torch.rand(1), np.random.rand(), random.random()
    second, _, _ = _checkpointer(tmp_path)
    second.resume()
    second.restore_rng()
    assert (torch.rand(1), np.random.rand(), random.random()) == expected


def test_a_new_run_drops_the_rows_of_a_run_killed_before_its_first_checkpoint(tmp_path):
    scalars = tmp_path / "logs" / "exp" / "scalars"
    scalars.mkdir(parents=True)
    (scalars / "loss.csv").write_text("64,1.0\n128,2.0\n")
    ckpt, _, _ = _checkpointer(tmp_path)
    assert ckpt.resume_run(tmp_path / "logs") == ["Dropped 2 logged rows after frame 0."]
    assert (scalars / "loss.csv").read_text() == ""
    assert not ckpt.finished_run("frames", 0)


def test_a_resume_drops_only_the_rows_after_its_checkpoint(tmp_path):
    first, _, _ = _checkpointer(tmp_path)
    first.counters.update(iteration=2, frames=128)
    first.save(finished=True)
    scalars = tmp_path / "logs" / "exp" / "scalars"
    scalars.mkdir(parents=True)
    (scalars / "loss.csv").write_text("64,1.0\n128,2.0\n192,3.0\n")
    second, _, _ = _checkpointer(tmp_path)
    notes = second.resume_run(tmp_path / "logs")
    assert notes[0].startswith("Resumed from") and notes[0].endswith("(iteration 2).")
    assert notes[1] == "Dropped 1 logged rows after frame 128."
    assert second.finished_run("frames", 128) and not second.finished_run("frames", 256)


def test_env_generators_reach_through_transforms():
    from torchrl.envs import StepCounter, TransformedEnv

    from torchrl_flowmbpo.envs import make_env

    env = TransformedEnv(make_env("cartpole", num_envs=1, seed=0), StepCounter())
    (generator,) = env_generators(env).values()
    assert generator is env.base_env._rng
    assert env_generators(torch.nn.Linear(1, 1)) == {}


def test_a_bound_collector_resumes_its_episodes_in_progress(tmp_path):
    from tensordict import TensorDict
    from torchrl.data import LazyTensorStorage, ReplayBuffer
    from torchrl.envs import Compose, RewardSum, StepCounter, TransformedEnv
    from torchrl.envs.utils import RandomPolicy

    from torchrl_flowmbpo.data import make_collector
    from torchrl_flowmbpo.envs import make_env

    def run(seed: int):
        """A checkpointer with a replay buffer (the collector's state is saved with it) and a
        collector of 4-step batches over 6-step episodes, on a fresh env."""
        env = make_env("cartpole", num_envs=2, seed=seed, episode_length=6)
        env = TransformedEnv(env, Compose(StepCounter(), RewardSum()))
        policy = RandomPolicy(env.full_action_spec)
        collector = make_collector(
            env, policy, frames_per_batch=8, total_frames=24, init_random_frames=0
        )
        buffer = ReplayBuffer(storage=LazyTensorStorage(10))
        buffer.extend(TensorDict({"x": torch.zeros(1)}, [1]))
        ckpt, _, _ = _checkpointer(tmp_path)
        ckpt.replay_buffer, ckpt.generators = buffer, env_generators(env)
        return ckpt, collector

    first, collector = run(seed=0)
    first.bind_collector(collector)
    batches = iter(collector)
    next(batches)
    first.counters["iteration"] = 1
    first.save()
    expected = next(batches)

    torch.manual_seed(5)
    second, fresh = run(seed=3)
    second.resume()
    second.bind_collector(fresh)
    second.restore_rng()
    resumed = next(iter(fresh))
    assert (expected["step_count"][:, 0] > 0).all()  # the batch starts mid-episode
    for key, value in expected.items(True, True):
        assert torch.equal(resumed[key], value), key


def test_a_bound_loop_state_is_saved_and_put_back_on_resume(tmp_path):
    first, _, _ = _checkpointer(tmp_path)
    carried = {"start": torch.arange(3.0)}
    assert not first.bind_state("rollout", lambda: dict(carried), pytest.fail)  # a new run
    first.counters["iteration"] = 2
    first.save()
    carried["start"] = carried["start"] + 1  # after the checkpoint: not what a resume sees

    second, _, _ = _checkpointer(tmp_path)
    second.resume()
    loaded = []
    assert second.bind_state("rollout", dict, loaded.append)
    assert torch.equal(loaded[0]["start"], torch.arange(3.0))
    assert not second.bind_state("other", dict, pytest.fail)  # not in that checkpoint
