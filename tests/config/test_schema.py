"""The schema types every key of configs/ and leaves the YAML values as they are."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from torchrl_flowmbpo.config import CONFIG_DIR, describe_error, validate
from torchrl_flowmbpo.config.entry import check_command_line
from torchrl_flowmbpo.config.schema import FlowWorldModelConfig, PWMAlgoConfig, PWMRunConfig

TASKS = sorted(p.stem for p in (CONFIG_DIR / "env").glob("*.yaml"))
BUNDLES = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
#: pretrain.yaml requires the dataset path; validation does not read the folder.
PRETRAIN = ("dataset.path=/data/recorded",)
#: (config, overrides) of every entry point, bundle and task.
COMPOSITIONS = [
    ("config", ()),
    *[("config", (f"experiment={name}",)) for name in BUNDLES],
    *[("config", (f"env={task}",)) for task in TASKS],
    ("config", ("diagnostics=full",)),
    *[("sac", (f"env={task}",)) for task in TASKS],
    ("pretrain", PRETRAIN),
    ("pretrain", (*PRETRAIN, "world_model=mlp")),
]
IDS = [f"{name}:{','.join(overrides) or 'default'}" for name, overrides in COMPOSITIONS]


@pytest.mark.parametrize(("config_name", "overrides"), COMPOSITIONS, ids=IDS)
def test_every_entry_point_bundle_and_task_composes_and_validates(
    compose_config, config_name, overrides
):
    validate(compose_config(config_name, *overrides))


@pytest.mark.parametrize(("config_name", "overrides"), COMPOSITIONS, ids=IDS)
def test_schema_leaves_every_value_as_the_yaml_files_set_it(
    compose_config, compose_without_schema, config_name, overrides
):
    plain = OmegaConf.to_container(compose_without_schema(config_name, *overrides))
    typed = OmegaConf.to_container(compose_config(config_name, *overrides))
    if "world_model" in typed and "world_model" not in plain:
        # experiment=shac removes the world-model group: the schema's slot stays, empty.
        assert typed.pop("world_model") is None
    # As text, so that a type the schema converts (an int into a float) counts as a change.
    assert OmegaConf.to_yaml(typed, sort_keys=True) == OmegaConf.to_yaml(plain, sort_keys=True)


def test_nodes_are_typed_by_their_group_option(compose_config):
    cfg = compose_config("config")
    assert OmegaConf.get_type(cfg) is PWMRunConfig
    assert OmegaConf.get_type(cfg.world_model) is FlowWorldModelConfig
    assert OmegaConf.get_type(cfg.algo) is PWMAlgoConfig
    assert isinstance(cfg.collector.total_frames, int) and isinstance(cfg.algo.gamma, float)


def test_schema_options_are_not_offered_as_group_options():
    problem = check_command_line(CONFIG_DIR, "config", ["world_model=nonexistent"])
    assert problem == ("world_model='nonexistent' is not allowed; allowed: one of ['flow', 'mlp'].")


#: (override, key, value, allowed): one per type the schema checks.
TYPE_ERRORS = [
    ("seed=abc", "seed", "'abc'", "an integer"),
    ("algo.horizon=1.5", "algo.horizon", "1.5", "an integer"),
    ("threads=two", "threads", "'two'", "an integer"),
    ("algo.gamma=high", "algo.gamma", "'high'", "a number"),
    (
        "world_model.termination_head=maybe",
        "world_model.termination_head",
        "'maybe'",
        "true or false",
    ),
    ("actor.hidden=[64,1.5]", "actor.hidden[1]", "1.5", "an integer"),
    ("algo.reward_clip=abc", "algo.reward_clip", "'abc'", "a number or null"),
    ("env.kwargs=3", "env.kwargs", "3", "a mapping of names to values"),
]


@pytest.mark.parametrize(("override", "key", "value", "allowed"), TYPE_ERRORS)
def test_a_bad_type_is_refused_in_one_line_naming_key_value_and_type(
    compose_config, override, key, value, allowed
):
    with pytest.raises(Exception) as info:
        compose_config("config", override)
    message = describe_error(info.value)
    assert message == f"{key}={value} is not allowed; allowed: {allowed}."


def test_a_list_where_names_are_expected_is_refused():
    problem = check_command_line(CONFIG_DIR, "pretrain", [*PRETRAIN, "dataset.parts=3"])
    assert problem == "dataset.parts=3 is not allowed; allowed: a list of strings or null."


@pytest.mark.parametrize("override", ["algo.no_such_key=1", "+algo.no_such_key=1"])
def test_an_unknown_key_is_refused_with_the_keys_allowed(override):
    problem = check_command_line(CONFIG_DIR, "config", [override])
    assert problem.startswith("algo.no_such_key is not a key of algo; allowed keys: [")
    assert "'horizon'" in problem and "\n" not in problem


@pytest.mark.parametrize(
    ("override", "new"),
    [
        ("world_model.substeps=4", "world_model.flow_steps"),
        ("actor.substeps=4", "actor.flow_steps"),
        ("env.kwargs.substeps=4", "env.kwargs.sim_substeps"),
        ("+env.kwargs.substeps=4", "env.kwargs.sim_substeps"),
    ],
)
def test_a_renamed_key_names_its_new_name(override, new):
    overrides = [override, "actor=flow"] if override.startswith("actor") else [override]
    old = override.lstrip("+").partition("=")[0]
    assert check_command_line(CONFIG_DIR, "config", overrides) == f"{old} was renamed {new}."
