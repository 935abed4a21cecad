"""studies/seed_table.py on synthetic run folders with hand-counted cells."""

from __future__ import annotations

from pathlib import Path

import pytest

STUDIES = Path(__file__).resolve().parents[2] / "studies"


@pytest.fixture(scope="module")
def table(load_script):
    load_script(STUDIES / "learning_report.py", "learning_report")
    return load_script(STUDIES / "seed_table.py", "seed_table")


def write_evals(write_metric, root: Path, variant: str, seed: int, steps, *series) -> None:
    """Return, episode-length and forward-velocity CSVs of one Ant run at the same steps."""
    returns, lengths, velocity = series
    for metric, values in (
        ("eval/return", returns),
        ("eval/episode_length", lengths),
        ("eval/forward_velocity", velocity),
    ):
        write_metric(root, "ant", variant, seed, metric, list(zip(steps, values, strict=True)))


def test_cells_count_still_evaluations_and_drop_superseded_rows(table, tmp_path, write_metric):
    # Seed 0 was resumed: its rows from step 300 on were logged again, and the superseded
    # evaluation at 400 (velocity 2.0) no longer counts.
    steps = [100, 200, 300, 400, 300, 400, 500]
    write_evals(
        write_metric,
        tmp_path,
        "baseline",
        0,
        steps,
        [10, 1000, 1200, 9, 1100, 1300, 1500],  # returns
        [50, 1000, 1000, 20, 1000, 1000, 1000],  # episode lengths
        [0.5, 0.05, -0.09, 2.0, 0.0, 0.2, 0.4],  # forward velocities
    )
    write_evals(write_metric, tmp_path, "baseline", 2, [100], [7.0], [30.0], [-0.3])
    write_metric(tmp_path, "cartpole", "baseline", 0, "eval/return", [(100, -5.0)])
    out = tmp_path / "out"
    groups = table.main([str(tmp_path), "--out", str(out), "--last-k", "2"])
    assert list(groups) == [("ant", "baseline")]  # cartpole logs no velocity
    first, last = groups["ant", "baseline"]
    # Kept rows 100, 200, 300 (1100), 400 (1300), 500; still: 200 and 300 (|v| < 0.1, 1000 steps).
    assert (first.seed, first.evaluations, first.still) == (0, 5, 2)
    assert first.final_return == pytest.approx(1400.0)
    assert first.final_velocity == pytest.approx(0.3)
    assert first.best_velocity == pytest.approx(0.5)
    assert (last.seed, last.evaluations, last.still, last.final_length) == (2, 1, 0, 30.0)
    markdown = (out / "seed_table.md").read_text()
    assert "| variant | seed 0 | seed 2 |" in markdown
    assert "| baseline | 1,400, 1,000 steps, 0.30 m/s; max 0.50; 2/5 still |" in markdown
    assert "7, 30 steps, -0.30 m/s; max -0.30; 0/1 still |" in markdown


def test_still_rule_follows_the_options(table, tmp_path, write_metric):
    write_evals(
        write_metric, tmp_path, "sac", 0, [1, 2, 3], [5, 5, 5], [500, 500, 400], [0.15, 0.0, 0.0]
    )
    args = [str(tmp_path), "--out", str(tmp_path / "out")]
    (run,) = table.main(args)["ant", "sac"]
    assert run.still == 0  # no 1,000-step episode
    (run,) = table.main([*args, "--episode-length", "500", "--still-speed", "0.2"])["ant", "sac"]
    assert run.still == 2


def test_bad_input_fails_clearly(table, tmp_path, write_metric):
    write_metric(tmp_path, "ant", "baseline", 0, "eval/return", [(100, 5.0), (200, 6.0)])
    write_metric(tmp_path, "ant", "baseline", 0, "eval/episode_length", [(100, 5.0)])
    write_metric(tmp_path, "ant", "baseline", 0, "eval/forward_velocity", [(100, 5.0)])
    with pytest.raises(SystemExit, match="eval/episode_length was logged at other steps"):
        table.main([str(tmp_path), "--out", str(tmp_path / "out")])
    only_returns = tmp_path / "only_returns"
    write_metric(only_returns, "ant", "sac", 0, "eval/return", [(100, 5.0)])
    with pytest.raises(SystemExit, match="No run logged all of: eval/return"):
        table.main([str(only_returns), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="does not exist"):
        table.main([str(tmp_path / "missing")])
    with pytest.raises(SystemExit):
        table.main([str(only_returns), "--still-speed", "0"])
