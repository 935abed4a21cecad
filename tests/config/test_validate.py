"""Every bad value is refused before anything is built, in one line naming the key, the value
and what is allowed."""

from __future__ import annotations

import pytest
import torch

from torchrl_flowmbpo.config import CONFIG_DIR, ConfigError, validate
from torchrl_flowmbpo.config.entry import check_command_line

#: (config, overrides, the whole one-line message).
BAD_VALUES = [
    (
        "config",
        ["+env.kwargs.episode_length=abc"],
        "env.kwargs.episode_length='abc' is not allowed; allowed: an integer.",
    ),
    (
        "config",
        ["env.kwargs.start_angle=upright"],
        "env.kwargs.start_angle='upright' is not allowed; allowed: a number.",
    ),
    (
        "config",
        ["+env.kwargs.capture=maybe"],
        "env.kwargs.capture='maybe' is not allowed; allowed: true or false.",
    ),
    (
        "config",
        ["algo.actor_updates_per_iter=0"],
        "algo.actor_updates_per_iter=0 is not allowed; allowed: an integer >= 1.",
    ),
    (
        "config",
        ["research.critic_warmup_steps=-1"],
        "research.critic_warmup_steps=-1 is not allowed; allowed: an integer >= 0.",
    ),
    (
        "config",
        ["research.actor_bc_steps=-3"],
        "research.actor_bc_steps=-3 is not allowed; allowed: an integer >= 0.",
    ),
    (
        "config",
        ["algo.entropy_coef=-0.5"],
        "algo.entropy_coef=-0.5 is not allowed; allowed: a finite number >= 0.",
    ),
    (
        "config",
        ["algo.actor_batch=-2"],
        "algo.actor_batch=-2 is not allowed; allowed: an integer >= 1, or null (env.num_envs).",
    ),
    (
        "config",
        ["research.real_value_coef=-0.5"],
        "research.real_value_coef=-0.5 is not allowed; allowed: a finite number >= 0.",
    ),
    (
        "config",
        ["diagnostics.critic_tail_tolerance=1.0"],
        "diagnostics.critic_tail_tolerance=1.0 is not allowed; allowed: a number in [0, 1).",
    ),
    (
        "config",
        ["diagnostics.probe_steps=-1"],
        "diagnostics.probe_steps=-1 is not allowed; allowed: an integer >= 0.",
    ),
    (
        "config",
        ["diagnostics.probe_envs=1"],
        "diagnostics.probe_envs=1 is not allowed; allowed: an integer >= 2.",
    ),
    (
        "config",
        ["research.init_controller_noise=-0.1"],
        "research.init_controller_noise=-0.1 is not allowed; allowed: a finite number >= 0.",
    ),
    (
        "config",
        ["actor.init_log_std=-2"],
        "actor.init_log_std=-2.0 is not allowed; allowed: a value >= actor.min_log_std=-1.427 "
        "(the floor).",
    ),
    (
        "config",
        ["algo.reward_norm=none", "algo.reward_clip=5"],
        "algo.reward_clip=5.0 is not allowed; allowed: null with algo.reward_norm=none (a clip "
        "of unnormalised rewards).",
    ),
    (
        "config",
        ["experiment=shac", "collector.total_frames=100"],
        "collector.total_frames=100 is not allowed; allowed: at least one SHAC window: "
        "env.num_envs x algo.horizon = 128.",
    ),
    ("config", ["env.num_envs=0"], "env.num_envs=0 is not allowed; allowed: an integer >= 1."),
    ("config", ["env.num_envs=-1"], "env.num_envs=-1 is not allowed; allowed: an integer >= 1."),
    (
        "config",
        ["collector.total_frames=0"],
        "collector.total_frames=0 is not allowed; allowed: an integer >= 1.",
    ),
    (
        "config",
        ["checkpoint.interval=0"],
        "checkpoint.interval=0 is not allowed; allowed: an integer >= 1.",
    ),
    ("config", ["threads=0"], "threads=0 is not allowed; allowed: an integer >= 1."),
    ("config", ["seed=-1"], "seed=-1 is not allowed; allowed: an integer >= 0."),
    ("config", ["device=tpu"], "device='tpu' is not allowed; allowed: cpu, cuda or cuda:N."),
    (
        "config",
        ["env.name=walker"],
        "env.name='walker' is not allowed; allowed: one of ['ant', 'anymal', 'cartpole', "
        "'humanoid'].",
    ),
    (
        "config",
        ["env=walker"],
        "env='walker' is not allowed; allowed: one of ['ant', 'anymal', 'cartpole', "
        "'cartpole_balance', 'humanoid'].",
    ),
    (
        "config",
        ["algo.actor_lr=-1e-3"],
        "algo.actor_lr=-0.001 is not allowed; allowed: a finite number > 0.",
    ),
    (
        "config",
        ["algo.critic_lr=0"],
        "algo.critic_lr=0.0 is not allowed; allowed: a finite number > 0.",
    ),
    ("config", ["algo.wm_lr=-1"], "algo.wm_lr=-1.0 is not allowed; allowed: a finite number > 0."),
    (
        "config",
        ["algo.final_lr=-1"],
        "algo.final_lr=-1.0 is not allowed; allowed: a finite number >= 0.",
    ),
    ("config", ["algo.gamma=nan"], "algo.gamma=nan is not allowed; allowed: a number in (0, 1]."),
    ("config", ["algo.horizon=0"], "algo.horizon=0 is not allowed; allowed: an integer >= 1."),
    ("config", ["eval.episodes=0"], "eval.episodes=0 is not allowed; allowed: an integer >= 1."),
    ("config", ["eval.num_envs=0"], "eval.num_envs=0 is not allowed; allowed: an integer >= 1."),
    ("config", ["eval.interval=-1"], "eval.interval=-1 is not allowed; allowed: an integer >= 0."),
    (
        "config",
        ["replay_buffer.size=0"],
        "replay_buffer.size=0 is not allowed; allowed: an integer >= 1.",
    ),
    (
        "config",
        ["world_model.integrator=leapfrog"],
        "world_model.integrator='leapfrog' is not allowed; allowed: one of ['euler', "
        "'midpoint', 'heun', 'rk4'].",
    ),
    (
        "config",
        ["world_model.flow_steps=0"],
        "world_model.flow_steps=0 is not allowed; allowed: an integer >= 1.",
    ),
    (
        "config",
        ["actor.hidden=[]"],
        "actor.hidden=[] is not allowed; allowed: a non-empty list of integers >= 1.",
    ),
    (
        "config",
        ["algo.term_pos_weight=-2"],
        "algo.term_pos_weight=-2 is not allowed; allowed: a finite number > 0 or 'balanced'.",
    ),
    (
        "config",
        ["+env.kwargs.episode_lenght=50"],
        "env.kwargs.episode_lenght is not a keyword argument of task 'cartpole'; allowed: "
        "['action_penalty', 'action_scale', 'capture', 'differentiable', 'episode_length', "
        "'reset_noise', 'reward_type', 'sim_dt', 'sim_substeps', 'start_angle'].",
    ),
    (
        "config",
        ["research.init_controller=trot"],
        "research.init_controller='trot' is not allowed; allowed: null (random actions) or a "
        "controller of task 'cartpole': ['pd'].",
    ),
    (
        "config",
        ["env=ant", "diagnostics.exact_gradient=true"],
        "diagnostics.exact_gradient=True is not allowed; allowed: false on a task without a "
        "differentiable simulator.",
    ),
    (
        "config",
        ["experiment=shac", "algo.horizon=0"],
        "algo.horizon=0 is not allowed; allowed: an integer >= 1.",
    ),
    (
        "sac",
        ["collector.total_frames=0"],
        "collector.total_frames=0 is not allowed; allowed: an integer >= 1.",
    ),
    ("sac", ["sac.lr=-1"], "sac.lr=-1.0 is not allowed; allowed: a finite number > 0."),
    ("sac", ["eval.episodes=0"], "eval.episodes=0 is not allowed; allowed: an integer >= 1."),
    (
        "sac",
        ["collector.frames_per_batch=100"],
        "collector.frames_per_batch=100 is not allowed; allowed: a multiple of env.num_envs=32.",
    ),
    (
        "pretrain",
        [],
        "dataset.path=None is not allowed; allowed: a dataset directory (the option is required).",
    ),
    (
        "pretrain",
        ["dataset.path=d", "steps=0"],
        "steps=0 is not allowed; allowed: an integer >= 1.",
    ),
    (
        "pretrain",
        ["dataset.path=d", "checkpoint.interval=0"],
        "checkpoint.interval=0 is not allowed; allowed: an integer >= 1.",
    ),
    (
        "pretrain",
        ["dataset.path=d", "algo.wm_lr=-3e-4"],
        "algo.wm_lr=-0.0003 is not allowed; allowed: a finite number > 0.",
    ),
]


@pytest.mark.parametrize(
    ("config_name", "overrides", "message"),
    BAD_VALUES,
    ids=[f"{name}:{','.join(overrides) or 'default'}" for name, overrides, _ in BAD_VALUES],
)
def test_bad_value_is_refused_in_one_line(config_name, overrides, message):
    assert check_command_line(CONFIG_DIR, config_name, overrides) == message


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_refused(monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check_command_line(CONFIG_DIR, "config", [f"device={device}"]) == (
        f"device='{device}' is not allowed; allowed: a device of this machine: ['cpu']."
    )


def test_a_cuda_index_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_command_line(CONFIG_DIR, "config", ["device=cuda:1"]) is None
    assert check_command_line(CONFIG_DIR, "config", ["device=cuda:2"]) == (
        "device='cuda:2' is not allowed; allowed: a device of this machine: "
        "['cpu', 'cuda:0', 'cuda:1']."
    )


def test_shac_needs_a_differentiable_task(compose_config):
    cfg = compose_config("config", "experiment=shac", "env=cartpole")
    validate(cfg)
    cfg.env.name = "ant"
    with pytest.raises(ConfigError, match=r"^env.name='ant' is not allowed; allowed: a task with"):
        validate(cfg)


def test_pwm_needs_a_world_model(compose_config):
    cfg = compose_config("config", "experiment=shac")
    cfg.algo.name = "pwm"
    with pytest.raises(
        ConfigError, match=r"^world_model=None is not allowed; allowed: mlp or flow"
    ):
        validate(cfg)


def test_a_key_left_without_value_is_named(compose_config):
    cfg = compose_config("config", "env.num_envs=???")
    with pytest.raises(ConfigError, match=r"^env.num_envs has no value; set it"):
        validate(cfg)
