"""examples/pwm_flow.py replay_buffer.offline_data=...: PWM's extraction with the offline data in
the replay buffer trains from the first batch; a dataset of another env count fails in one line."""

from __future__ import annotations

import sys

import pytest

from torchrl_flowmbpo.trainers import load_checkpoint

#: Four batches of 64 frames on 4 swing-up cartpoles, the tiny dataset's task and env count.
RUN = (
    "env=cartpole collector.total_frames=256 eval.episodes=1 eval.num_envs=1 logger=none "
    "diagnostics.interval=0 seed=1 world_model=mlp hydra.run.dir=DIR"
)


@pytest.fixture(scope="module")
def dataset(scripts, tmp_path_factory):
    module = sys.modules[type(scripts).__module__]
    return module.make_tiny_dataset(tmp_path_factory.mktemp("offline") / "ds")


def test_offline_data_fill_the_buffer_so_training_starts_at_the_first_batch(scripts, dataset):
    without = scripts.start_training(f"{RUN} env.num_envs=4")
    run = scripts.start_training(f"{RUN} env.num_envs=4 replay_buffer.offline_data={dataset}")
    run, without = run.result().check(), without.result().check()
    assert "replay buffer: 192 offline transitions of" in run.stdout + run.stderr
    # 128 random frames (init_random_frames) hold back the first two updates without the data.
    assert load_checkpoint(without.run_dir)["counters"]["iteration"] == 3
    assert load_checkpoint(run.run_dir)["counters"]["iteration"] == 4


def test_offline_data_of_another_env_count_fail_in_one_line(scripts, dataset):
    run = scripts.start_training(
        f"{RUN} env.num_envs=2 replay_buffer.offline_data={dataset}"
    ).result()
    assert run.returncode == 1
    message = run.stderr.strip().splitlines()[-1]
    assert "has num_envs=4; this run has num_envs=2" in message
