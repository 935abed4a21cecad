"""benchmarks/branch_slopes.py: the branched data and a tiny end-to-end row."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "branch_slopes.py"
# benchmarks/ is a folder of scripts, not a package.
sys.path.insert(0, str(SCRIPT.parent))
import branch_slopes as bench  # noqa: E402


@pytest.fixture(scope="module")
def states() -> torch.Tensor:
    return bench.trot_states(3, 4, seed=0)


def test_branches_restart_at_their_state_and_differ_by_action(states):
    data, dropped = bench.branch_data(states, 2, 3, seed=0)
    assert dropped == 0.0 and data.shape == (6, 3)
    first = data.get("observation")[:, 0]
    # Rows 2i and 2i + 1 are the branches of state i, restarted there (up to the renormalised
    # quaternion and the heading projection seen from the origin: ~1e-3 after a trot's metres).
    torch.testing.assert_close(first, states.repeat_interleave(2, 0), atol=5e-3, rtol=0)
    actions = data.get("action")
    assert float(actions.abs().max()) <= bench.ACTION_RANGE
    assert not torch.equal(actions[0], actions[1])
    # Same state, other actions: the branches part after the first step.
    after = data.get(("next", "observation"))[:, 0]
    assert float((after[0] - after[1]).abs().max()) > 1e-3
    # Each step's next observation is the following step's observation.
    torch.testing.assert_close(
        data.get(("next", "observation"))[:, :-1], data.get("observation")[:, 1:]
    )


def test_bad_branches_are_refused(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--branches", "1", "3", "--slices", "16"])
    assert "--branches [3]: each must be >= 1 and divide --slices 16" in capsys.readouterr().err


def test_tiny_run_writes_finite_rows(tmp_path, capsys):
    out = tmp_path / "rows.csv"
    bench.main(
        ["--branches", "1", "2", "--slices", "4", "--horizon", "2", "--steps", "2",
         "--batch", "4", "--states", "3", "--smooth", "0.3", "--smooth-samples", "2",
         "--csv", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "branches 1: 4 trot states x 1" in printed and "branches 2: 2 trot states x 2" in printed
    rows = list(csv.DictReader(out.open()))
    assert [(r["wm"], r["branches"]) for r in rows] == [("mlp", "1"), ("mlp", "2")]
    for row in rows:
        assert row["smooth"] == "0.3"
        assert -1.0 <= float(row["grad_cos_mean"]) <= 1.0
        assert math.isfinite(float(row["value_corr"]))
        assert len(row["cos_per_step"].split()) == 2
