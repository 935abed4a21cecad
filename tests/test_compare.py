"""``python -m torchrl_flowmbpo.compare``: differing keys of runs, checkpoints and bundles."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchrl_flowmbpo.compare import (
    ABSENT,
    ConfigSourceError,
    differing_across,
    differing_keys,
    flatten,
    load_config,
    main,
)
from torchrl_flowmbpo.config.renames import ADDED_KEYS
from torchrl_flowmbpo.provenance import start_run


def test_flatten_keeps_lists_and_empty_mappings_as_leaves() -> None:
    assert flatten({"a": {"b": [1, 2], "c": {}}, "d": None}) == {
        "a.b": [1, 2],
        "a.c": {},
        "d": None,
    }


def test_hydra_keys_are_ignored() -> None:
    assert differing_keys({"hydra": {"run": 1}, "x": 1}, {"hydra": {"run": 2}, "x": 1}) == []


def test_runs_print_exactly_the_differing_keys(tmp_path: Path, capsys) -> None:
    start_run(tmp_path / "a", {"seed": 0, "algo": {"horizon": 16, "gamma": 0.99}}, argv=[])
    start_run(tmp_path / "b", {"seed": 1, "algo": {"horizon": 16, "gamma": 0.99}}, argv=[])
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.splitlines() == ["seed: 0 -> 1"]


def test_hydra_run_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 4\n")
    assert load_config(str(tmp_path)) == {"seed": 4}


def test_checkpoint_config_is_read_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_3.pt"
    torch.save({"config": {"seed": 2}, "modules": {}}, path)
    assert load_config(str(path)) == {"seed": 2}


def test_checkpoint_config_comes_from_the_manifest(tmp_path: Path) -> None:
    from torchrl_flowmbpo.trainers.checkpointing import RunCheckpoints

    path = RunCheckpoints(tmp_path).save(
        {"run": {"w": torch.ones(1)}}, step=3, metadata={"config": {"seed": 5}}
    )
    assert load_config(str(path)) == {"seed": 5}
    bad = tmp_path / "checkpoint-000000000004.torchrl"
    bad.write_text("hello")
    with pytest.raises(ConfigSourceError, match="is not a readable checkpoint"):
        load_config(str(bad))


def test_bundles_differ_in_their_keys(capsys) -> None:
    assert main(["experiment=baseline", "experiment=flow_wm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "variant: 'baseline' -> 'flow_wm'" in lines
    assert any(line.startswith("world_model.type: 'mlp' -> 'flow'") for line in lines)
    assert not any(line.startswith("seed:") for line in lines)


def test_same_bundle_has_no_difference(capsys) -> None:
    assert main(["experiment=flow_wm", "experiment=flow_wm seed=0"]) == 0
    assert capsys.readouterr().out.strip() == "No resolved key differs."


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"not a checkpoint", "is not a torch file"), (None, "holds no 'config'")],
)
def test_bad_sources_are_refused_in_one_line(tmp_path: Path, capsys, content, reason) -> None:
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save(torch.zeros(3), path)
    else:
        path.write_bytes(content)
    assert main([str(path), str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and reason in err and str(path) in err


def test_unknown_source_names_what_is_allowed(capsys) -> None:
    assert main(["nowhere", "nowhere"]) == 2
    assert "run directory, a checkpoint, a YAML file or Hydra overrides" in capsys.readouterr().err


def test_a_key_added_later_as_null_does_not_split_a_group() -> None:
    old = {"seed": 0, "replay_buffer": {"size": 10}}
    new = {"seed": 1, "replay_buffer": {"size": 10, "offline_data": None}}
    assert differing_across({"old": old, "new": new}) == {}
    new["replay_buffer"]["offline_data"] = "runs/datasets/anymal_sac"
    assert differing_across({"old": old, "new": new}) == {
        "replay_buffer.offline_data": {"old": ABSENT, "new": "runs/datasets/anymal_sac"}
    }


@pytest.mark.parametrize(("value", "differs"), [(True, False), (False, True), (None, True)])
def test_an_absent_added_key_counts_as_the_value_runs_had_before_it(value, differs) -> None:
    old = {"actor": {"type": "gaussian"}}
    new = {"actor": {"type": "gaussian", "detach_latent": value}}
    assert ADDED_KEYS["actor.detach_latent"] is True  # before the key, the input was detached
    assert bool(differing_across({"old": old, "new": new})) == differs
