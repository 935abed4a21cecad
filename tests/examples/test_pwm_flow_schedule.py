"""pwm_flow's schedule options: critic warm-up, actor steps per iteration, the entropy bonus, the
critic's real-data loss, and one-line errors for out-of-range values."""

from __future__ import annotations

import math

import pytest

from torchrl_flowmbpo.trainers import load_checkpoint

#: 4 cartpole envs x 16 steps = 64 frames per batch; 320 frames: 5 batches, learning from the
#: 2nd (the 128 random frames are complete there), so 4 iterations.
SCHEDULE = (
    "env=cartpole env.num_envs=4 collector.total_frames=320 eval.episodes=1 eval.num_envs=1 "
    "logger=csv seed=2 research.critic_warmup_steps=3 algo.actor_updates_per_iter=2 "
    "algo.entropy_coef=0.1 algo.critic_iterations=2 algo.critic_minibatches=2 "
    "research.real_value_coef=0.5 hydra.run.dir=DIR"
)


@pytest.fixture(scope="module")
def schedule_run(scripts):
    return scripts.start_training(SCHEDULE).result().check()


def test_optimiser_steps_follow_the_schedule(schedule_run):
    state = load_checkpoint(schedule_run.run_dir)
    iterations = state["counters"]["iteration"]
    assert iterations == 4
    steps = {name: int(opt["state"][0]["step"]) for name, opt in state["optimizers"].items()}
    # Two actor steps per iteration; the warm-up moves only the critic (3 x 2 x 2 steps), and
    # every actor step is followed by its 2 x 2 critic steps.
    assert steps["actor"] == 2 * iterations
    assert steps["critic"] == 3 * 4 + 2 * iterations * 4
    assert steps["world_model"] == 2 + 8 * iterations  # warm-up, then 8 per iteration


def test_entropy_terms_are_logged(schedule_run, read_scalars):
    (log_dir,) = (schedule_run.run_dir / "logs").iterdir()
    _, entropy = read_scalars(log_dir / "scalars" / "actor/entropy.csv")
    _, loss = read_scalars(log_dir / "scalars" / "actor/loss_entropy.csv")
    assert len(entropy) == 4
    assert loss == pytest.approx([-0.1 * h for h in entropy], rel=1e-4)


def test_real_value_loss_is_logged(schedule_run, read_scalars):
    (log_dir,) = (schedule_run.run_dir / "logs").iterdir()
    _, real = read_scalars(log_dir / "scalars" / "critic/loss_value_real.csv")
    _, targets = read_scalars(log_dir / "scalars" / "critic/value_target_real_mean.csv")
    assert len(real) == len(targets) == 4
    assert all(value > 0 for value in real)
    assert all(math.isfinite(value) for value in targets)
