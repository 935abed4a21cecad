"""studies/diagnostics_table.py on synthetic run folders with hand-computed finals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

STUDIES = Path(__file__).resolve().parents[2] / "studies"


@pytest.fixture(scope="module")
def table(load_script):
    load_script(STUDIES / "learning_report.py", "learning_report")
    return load_script(STUDIES / "diagnostics_table.py", "diagnostics_table")


def test_finals_stop_at_the_common_step_and_sac_is_left_out(table, tmp_path, write_metric):
    corr, gap = "diagnostics/reward_corr_mean", "diagnostics/exploitation_gap_per_step"
    # seed0 logs to 400, seed1 to 300: finals over the last 2 points at or before 300.
    write_metric(
        tmp_path, "ant", "baseline", 0, corr, [(100, 0.1), (200, 0.5), (300, 0.7), (400, 0.9)]
    )
    write_metric(tmp_path, "ant", "baseline", 1, corr, [(100, 0.2), (200, 0.3), (300, 0.5)])
    write_metric(tmp_path, "ant", "baseline", 0, gap, [(300, -1.0), (400, 3.0)])
    # SAC logs returns only.
    write_metric(tmp_path, "ant", "sac", 0, "eval/return", [(100, 5.0)])
    out = tmp_path / "out"
    rows = table.main([str(tmp_path), "--out", str(out), "--last-k", "2"])
    (row,) = rows
    assert (row["task"], row["variant"], row["seeds"]) == ("ant", "baseline", 2)
    np.testing.assert_allclose(row[corr], [0.6, 0.4])  # (0.5 + 0.7) / 2, (0.3 + 0.5) / 2
    np.testing.assert_allclose(row[gap], [1.0])  # one seed: (-1 + 3) / 2
    assert row["diagnostics/critic_bias"].size == 0
    assert row["frames"] == 300  # the earliest common step over the logged diagnostics
    markdown = (out / "diagnostics_table.md").read_text()
    assert "| ant | baseline | 2 | 300 | 0.5 (0.4 to 0.6) |" in markdown
    assert "| 1 |" in markdown and "—" in markdown and "sac" not in markdown
    csv_rows = (out / "diagnostics_table.csv").read_text().splitlines()
    assert csv_rows[0].startswith("task,variant,seeds,frames,diagnostics/reward_corr_mean")
    assert csv_rows[1].startswith("ant,baseline,2,300,0.5")


def test_no_diagnostics_is_a_clear_error(table, tmp_path, write_metric):
    write_metric(tmp_path, "ant", "sac", 0, "eval/return", [(100, 5.0)])
    with pytest.raises(SystemExit, match="No run logged any of: diagnostics/reward_corr_mean"):
        table.main([str(tmp_path), "--out", str(tmp_path / "out")])
