"""Every config group option and experiment bundle composes and builds its networks, and the
bundles differ only in the keys they are meant to change (variants whose configs differ in more
than the intended keys compare nothing; docs/algorithm.md, "Defaults and PWM's values")."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tensordict import TensorDict

from torchrl_flowmbpo.config.entry import check_command_line
from torchrl_flowmbpo.modules.builders import (
    ACTOR_TYPES,
    WORLD_MODEL_TYPES,
    build_actor,
    build_critic,
)
from torchrl_flowmbpo.trainers import factories, make_policy
from torchrl_flowmbpo.trainers.shac import shac_model_specs

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs"
GROUPS = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir())
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIG_DIR / g).glob("*.yaml"))]
BUNDLES = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
#: The bundles of PWM's loop; experiment=shac runs another loop, without a world model.
PWM_BUNDLES = [name for name in BUNDLES if name != "shac"]
#: Group options that build PWM's networks (the SHAC bundle is tested on its own).
PWM_OPTIONS = [option for option in OPTIONS if option != ("experiment", "shac")]
TINY_OBS, TINY_ACT = 5, 2


@pytest.fixture(scope="module")
def utils():
    # The factories pwm_flow.py builds its run with, and its closed-loop policy.
    return SimpleNamespace(
        model_specs=factories.model_specs,
        make_models=factories.make_models,
        make_policy=make_policy,
    )


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def flatten(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


@pytest.fixture(scope="module")
def bundles():
    return {
        name: flatten(OmegaConf.to_container(compose_config(f"experiment={name}"), resolve=True))
        for name in PWM_BUNDLES
    }


def test_groups_and_bundles_are_present():
    assert {"env", "world_model", "actor", "critic", "algo", "logger", "experiment"} <= set(GROUPS)
    assert BUNDLES == ["baseline", "flow_policy", "flow_wm", "full_flow", "shac"]


@pytest.mark.parametrize(("group", "option"), PWM_OPTIONS, ids=[f"{g}={o}" for g, o in PWM_OPTIONS])
def test_option_composes_and_builds_models(utils, group, option):
    torch.manual_seed(0)
    cfg = compose_config(f"{group}={option}", "world_model.preset=small")
    selected = {
        "env": lambda: cfg.env.name,
        "world_model": lambda: cfg.world_model.type,
        "actor": lambda: cfg.actor.type,
        "logger": lambda: cfg.logger.backend,
        "experiment": lambda: cfg.variant,
    }
    # env options are named after their task, except a task's variants (cartpole_balance).
    expected = {("env", "cartpole_balance"): "cartpole"}.get((group, option), option)
    if group in selected:
        assert selected[group]() == expected
    specs = utils.model_specs(cfg)
    world_model, actor, critic = utils.make_models(specs, TINY_OBS, TINY_ACT, "cpu")
    assert isinstance(world_model, WORLD_MODEL_TYPES[specs["world_model"]["type"]])
    assert isinstance(actor, ACTOR_TYPES[specs["actor"]["type"]])
    # One closed-loop policy step, a value and a world-model step on tiny inputs.
    td = utils.make_policy(world_model, actor)(
        TensorDict({"observation": torch.randn(3, TINY_OBS)}, [3])
    )
    assert td["action"].shape == (3, TINY_ACT) and td["action"].abs().max() <= 1
    assert critic(td)["state_value"].shape == (3, 1)
    next_latent = world_model.next(td["latent"], td["action"])
    assert next_latent.shape == td["latent"].shape and torch.isfinite(next_latent).all()


def test_shac_bundle_has_no_world_model_and_builds_its_networks():
    cfg = compose_config("experiment=shac", "env=cartpole")
    assert cfg.variant == "shac" and cfg.algo.name == "shac" and cfg.world_model is None
    assert (cfg.algo.horizon, cfg.algo.ret_rms, cfg.algo.target_critic) == (32, False, True)
    assert cfg.critic.num_members == 1 and list(cfg.actor.hidden) == [64, 64]
    specs = shac_model_specs(cfg)
    assert "world_model" not in specs
    actor = build_actor(specs["actor"], TINY_OBS, TINY_ACT)
    critic = build_critic(specs["critic"], TINY_OBS, input_norm=actor.policy_net.input_norm)
    td = actor(TensorDict({"observation": torch.randn(3, TINY_OBS)}, [3]))
    assert td["action"].shape == (3, TINY_ACT)
    assert critic(td)["state_value_members"].shape == (3, 1, 1)
    # Every PWM bundle runs PWM's loop.
    assert {compose_config(f"experiment={name}").algo.name for name in PWM_BUNDLES} == {"pwm"}


def test_task_algo_settings_follow_the_env():
    # Measured on Ant (docs/archive/experiment_log.md) and used by every locomotion sweep;
    # the cartpole defaults were measured with 8.
    envs = {p.stem for p in (CONFIG_DIR / "env").glob("*.yaml")}
    specialised = {p.stem for p in (CONFIG_DIR / "algo_env").glob("*.yaml")}
    assert specialised == {"ant", "anymal", "humanoid"} and specialised <= envs
    for env in sorted(envs):
        cfg = compose_config(f"env={env}", "experiment=baseline")
        assert cfg.algo.wm_updates_per_iter == (2 if env in specialised else 8), env
        assert "algo_env" not in cfg
    # The command line still wins over the task's setting.
    cfg = compose_config("env=ant", "algo.wm_updates_per_iter=8")
    assert cfg.algo.wm_updates_per_iter == 8


def test_task_algo_settings_change_only_algo_keys():
    for env in ("ant", "anymal", "humanoid"):
        plain = flatten(OmegaConf.to_container(compose_config(f"env={env}", "~algo_env")))
        tuned = flatten(OmegaConf.to_container(compose_config(f"env={env}")))
        changed = {k for k in plain.keys() | tuned.keys() if plain.get(k) != tuned.get(k)}
        assert changed == {"algo.wm_updates_per_iter"}, (env, changed)


def test_bundles_set_their_types(bundles):
    expected = {
        "baseline": ("mlp", "gaussian"),
        "flow_wm": ("flow", "gaussian"),
        "flow_policy": ("mlp", "flow"),
        "full_flow": ("flow", "flow"),
    }
    for name, cfg in bundles.items():
        assert cfg["variant"] == name
        assert (cfg["world_model.type"], cfg["actor.type"]) == expected[name]


def test_default_config_is_the_flow_world_model_bundle(bundles):
    # The measured best on the default task (docs/archive/experiment_log.md); the PWM
    # baseline is one override away (experiment=baseline).
    default = flatten(OmegaConf.to_container(compose_config(), resolve=True))
    assert default == bundles["flow_wm"]


def test_default_task_is_the_balance_and_every_bundle_uses_the_twohot_head(bundles):
    # Measured (docs/algorithm.md, "Reward head"): with the scalar head the default ends at
    # random level on the balance task.
    default = compose_config()
    assert default.env.name == "cartpole" and default.env.kwargs.start_angle == 0.0
    assert {cfg["world_model.reward_head"] for cfg in bundles.values()} == {"twohot"}


@pytest.mark.parametrize("name", ["flow_wm", "flow_policy", "full_flow"])
def test_bundles_differ_only_in_intended_keys(bundles, name):
    base, other = bundles["baseline"], bundles[name]
    changed = {k for k in base.keys() | other.keys() if base.get(k, "<absent>") != other.get(k)}
    allowed_roots = {"flow_wm": ("world_model",), "flow_policy": ("actor",)}.get(
        name, ("world_model", "actor")
    )
    # Nothing outside the swapped components differs: the FlowActor has a density, so its
    # bundles keep the baseline's entropy bonus (and every other algo key).
    assert other["algo.entropy_coef"] == base["algo.entropy_coef"] > 0
    unexpected = {k for k in changed if k != "variant" and k.split(".")[0] not in allowed_roots}
    assert not unexpected, {k: (base.get(k), other.get(k)) for k in unexpected}
    # Keys the two world models / actors share keep the baseline's value (preset, reward head,
    # termination head, hidden widths, log-std init and floor...): only the type and the keys
    # that exist for one kind only may differ.
    shared_changes = {k for k in changed & base.keys() & other.keys() if k != "variant"}
    assert shared_changes <= {"world_model.type", "actor.type"}, {
        k: (base[k], other[k]) for k in shared_changes
    }


def test_full_flow_combines_flow_wm_and_flow_policy(bundles):
    full = bundles["full_flow"]
    for key, value in full.items():
        if key.startswith("world_model."):
            assert bundles["flow_wm"][key] == value, key
        elif key.startswith("actor."):
            assert bundles["flow_policy"][key] == value, key


def test_grad_checkpoint_override_reaches_the_flow_world_model(utils):
    overrides = (
        "experiment=flow_wm",
        "world_model.preset=small",
        "world_model.grad_checkpoint=true",
    )
    assert check_command_line(CONFIG_DIR, "config", list(overrides)) is None
    # The MLP world model has no ODE solve to checkpoint.
    problem = check_command_line(
        CONFIG_DIR, "config", ["experiment=baseline", "world_model.grad_checkpoint=true"]
    )
    assert problem.startswith("world_model.grad_checkpoint is not a key of world_model")
    specs = utils.model_specs(compose_config(*overrides))
    assert specs["world_model"]["grad_checkpoint"] is True
    assert utils.make_models(specs, TINY_OBS, TINY_ACT, "cpu")[0].grad_checkpoint is True
    # Checkpoints written before the option existed lack the key: rebuilt without checkpointing.
    del specs["world_model"]["grad_checkpoint"]
    assert utils.make_models(specs, TINY_OBS, TINY_ACT, "cpu")[0].grad_checkpoint is False
    problem = check_command_line(
        CONFIG_DIR, "config", [*overrides[:2], "world_model.grad_checkpoint=maybe"]
    )
    assert problem == "world_model.grad_checkpoint='maybe' is not allowed; allowed: true or false."
