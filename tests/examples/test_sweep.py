"""A local sweep through Hydra's joblib launcher: one command trains variants x seeds in
parallel, each run in its own directory with its provenance, and the learning report turns the
sweep directory into its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 800
#: 2 variants x 2 seeds of 256 frames, kept to seconds as the other example tests do.
SWEEP = (
    "-m sweep=local experiment=baseline,flow_wm seed=0,1 env.num_envs=4 "
    "collector.total_frames=256 eval.episodes=1 eval.num_envs=1 logger=csv "
    "collector.init_random_frames=128 algo.wm_warmup_steps=2 algo.wm_batch_slices=8 "
    "+env.kwargs.episode_length=100"
)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    args = [*SWEEP.split(), f"hydra.sweep.dir={root}"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pwm_flow.py"), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_each_run_has_its_directory_and_provenance(sweep_dir: Path) -> None:
    runs = sorted(p.relative_to(sweep_dir).as_posix() for p in sweep_dir.glob("*/seed*"))
    assert runs == ["baseline/seed0", "baseline/seed1", "flow_wm/seed0", "flow_wm/seed1"]
    for run in runs:
        record = json.loads((sweep_dir / run / "provenance.json").read_text())
        assert record["starts"][-1]["finished"] is not None
        assert (sweep_dir / run / "config.yaml").is_file()


def test_report_groups_the_sweep_by_variant(sweep_dir: Path, tmp_path: Path) -> None:
    report = [sys.executable, str(ROOT / "studies" / "learning_report.py"), str(sweep_dir)]
    done = subprocess.run(
        [*report, "--out", str(tmp_path), "--reps", "200"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = (tmp_path / "learning_table.csv").read_text().splitlines()
    variants = sorted(row.split(",")[1] for row in rows[1:])
    assert variants == ["baseline", "flow_wm"]
    assert all(row.split(",")[2] == "2" for row in rows[1:])  # two seeds each
