"""Run provenance: the resolved config, the commit, the versions and one entry per start."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from omegaconf import OmegaConf

from torchrl_flowmbpo import provenance
from torchrl_flowmbpo.provenance import (
    CONFIG_FILE,
    PROVENANCE_FILE,
    finish_run,
    git_state,
    start_run,
)


def _record(run: Path) -> dict:
    return json.loads((run / PROVENANCE_FILE).read_text())


def test_config_is_written_resolved(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"seed": 3, "algo": {"horizon": 16, "twice": "${algo.horizon}"}})
    start_run(tmp_path, cfg, argv=["x"])
    written = OmegaConf.load(tmp_path / CONFIG_FILE)
    assert OmegaConf.to_container(written) == {"seed": 3, "algo": {"horizon": 16, "twice": 16}}


def test_each_start_is_recorded_and_only_the_latest_is_finished(tmp_path: Path) -> None:
    start_run(tmp_path, {"seed": 0}, argv=["first"])
    finish_run(tmp_path)
    start_run(tmp_path, {"seed": 0}, argv=["second"])  # a resume that is then killed
    starts = _record(tmp_path)["starts"]
    assert [s["argv"] for s in starts] == [["first"], ["second"]]
    assert starts[0]["finished"] is not None and starts[1]["finished"] is None
    assert starts[0]["started"] <= starts[0]["finished"]


def test_versions_and_host_are_recorded(tmp_path: Path) -> None:
    start_run(tmp_path, {"seed": 0}, argv=[])
    record = _record(tmp_path)
    assert (
        record["packages"]["torchrl_flowmbpo"] == provenance.package_versions()["torchrl_flowmbpo"]
    )
    assert record["packages"]["torch"] is not None
    assert record["host"]


def test_git_state_reads_commit_and_dirtiness(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f.txt").write_text("one")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    assert git_state(repo) == {"commit": head.stdout.strip(), "dirty": False}
    (repo / "f.txt").write_text("two")
    assert git_state(repo)["dirty"] is True


def test_git_state_outside_a_tree_is_unknown(tmp_path: Path) -> None:
    assert git_state(tmp_path) == {"commit": None, "dirty": None}


def test_a_refused_start_never_overwrites_the_runs_config(tmp_path: Path) -> None:
    start_run(tmp_path, {"seed": 0, "frames": 10}, argv=[])
    start_run(tmp_path, {"seed": 5, "frames": 10}, argv=[])  # refused: never finishes
    assert OmegaConf.load(tmp_path / CONFIG_FILE).seed == 0
    finish_run(tmp_path, {"seed": 0, "frames": 20})  # an extended resume that finished
    assert OmegaConf.load(tmp_path / CONFIG_FILE).frames == 20


def test_a_later_start_of_another_process_keeps_its_own_entry(tmp_path: Path) -> None:
    start_run(tmp_path, {"seed": 0}, argv=["running"])
    record = _record(tmp_path)
    record["starts"].append({"argv": ["refused"], "pid": -1, "finished": None})
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps(record))
    finish_run(tmp_path)
    starts = _record(tmp_path)["starts"]
    assert starts[0]["finished"] is not None and starts[1]["finished"] is None


def test_finish_without_provenance_is_a_no_op(tmp_path: Path) -> None:
    finish_run(tmp_path)
    assert not (tmp_path / PROVENANCE_FILE).exists()
