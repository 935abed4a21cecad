"""Checkpoints written before a key was renamed load under the new names; model specs written
before a key existed get the value their model was built with."""

from __future__ import annotations

import pytest
import torch

from torchrl_flowmbpo.config import RENAMED_KEYS, upgrade_checkpoint
from torchrl_flowmbpo.modules.builders import build_actor, build_world_model
from torchrl_flowmbpo.trainers.checkpoint import load_checkpoint
from torchrl_flowmbpo.trainers.checkpointing import RunCheckpoints

SMALL = {"latent_dim": 16, "encoder_units": (16,), "units": (16,)}


def _old_state() -> dict:
    """What a checkpoint of a flow run held before the renames (models left out)."""
    world_model = {"type": "flow", "integrator": "euler", "substeps": 3, **SMALL}
    actor = {"type": "flow", "hidden": [8], "substeps": 5}
    env = {"name": "cartpole", "kwargs": {"substeps": 4}}
    return {
        "specs": {"world_model": world_model, "actor": actor, "env": env},
        "config": {"world_model": dict(world_model), "actor": dict(actor), "env": dict(env)},
    }


def test_every_renamed_key_is_renamed_in_specs_and_config():
    state = upgrade_checkpoint(_old_state())
    for entry in ("specs", "config"):
        tree = state[entry]
        assert tree["world_model"]["flow_steps"] == 3 and "substeps" not in tree["world_model"]
        assert tree["actor"]["flow_steps"] == 5 and "substeps" not in tree["actor"]
        assert tree["env"]["kwargs"] == {"sim_substeps": 4}
    assert set(RENAMED_KEYS) == {"world_model.substeps", "actor.substeps", "env.kwargs.substeps"}


def test_an_old_checkpoint_file_loads_and_builds_its_models(tmp_path):
    path = RunCheckpoints(tmp_path).save({"run": _old_state()}, step=1)
    specs = load_checkpoint(path)["specs"]
    world_model = build_world_model(specs["world_model"], 5, 1)
    actor = build_actor(specs["actor"], world_model.latent_dim, 1)
    assert (world_model.flow_steps, actor.module[0].module.flow_steps) == (3, 5)
    # Built as before the keys existed, not with today's defaults (False, "zero").
    assert actor.module[0].module.detach_latent is True
    assert specs["actor"]["velocity_init"] == "default"


def test_a_current_checkpoint_is_left_as_it_is():
    actor = {"type": "flow", "detach_latent": False, "velocity_init": "zero"}
    state = {
        "specs": {"world_model": {"type": "flow", "flow_steps": 2}, "actor": dict(actor)},
        "config": {"seed": 0},
    }
    assert upgrade_checkpoint(state) == {
        "specs": {"world_model": {"type": "flow", "flow_steps": 2}, "actor": actor},
        "config": {"seed": 0},
    }


def test_an_old_gaussian_actor_spec_gets_the_detached_input_only():
    state = upgrade_checkpoint({"specs": {"actor": {"type": "gaussian", "hidden": [8]}}})
    assert state["specs"]["actor"] == {"type": "gaussian", "hidden": [8], "detach_latent": True}


def test_both_names_at_once_are_refused():
    state = {"specs": {"world_model": {"substeps": 2, "flow_steps": 4}}}
    with pytest.raises(
        ValueError, match=r"both world_model\.substeps .* and world_model\.flow_steps"
    ):
        upgrade_checkpoint(state)


def test_weights_are_left_untouched():
    weights = torch.ones(2)
    state = {"modules": {"w": weights}, "specs": {"actor": {"substeps": 1}}}
    assert upgrade_checkpoint(state)["modules"]["w"] is weights
