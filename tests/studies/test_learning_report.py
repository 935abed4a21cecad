"""studies/learning_report.py on synthetic run folders with hand-computed statistics."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "learning_report.py"
STEPS = [1000, 2000, 3000, 4000, 5000]
REPS = ["--reps", "300"]


@pytest.fixture(scope="module")
def report(load_script):
    return load_script(SCRIPT, "learning_report")


def write_run(root: Path, task: str, variant: str, seed: int, metrics: dict) -> None:
    """Writes a run as pwm_flow does: <root>/<task>/<variant>/seed<k>/logs/<name>/scalars/."""
    scalars = root / task / variant / f"seed{seed}" / "logs" / f"{variant}_{task}_seed{seed}"
    for name, rows in metrics.items():
        path = scalars / "scalars" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{step},{value}\n" for step, value in rows))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Three groups with hand-checkable statistics, in pwm_flow's run-directory layout."""
    root = tmp_path / "runs"
    # ant/baseline, timed: finals (mean of the last 3 points) 1, 2, 6 and a collapsed 0.
    for seed in range(4):
        final = (1.0, 2.0, 6.0, 0.0)[seed]
        returns = [0.0, 2.0, final - 1, final, final + 1]
        write_run(
            root,
            "ant",
            "baseline",
            seed,
            {
                "eval/return": list(zip(STEPS, returns, strict=True)),
                "eval/episode_length": [(step, 100 * (seed + 1)) for step in STEPS],
                "eval/forward_velocity": [(step, 0.1 * seed) for step in STEPS],
                "time/elapsed_s": [(step, step / 100) for step in range(500, 5001, 500)],
            },
        )
    # ant/flow_wm, no episode length: seed1 stops 1000 frames early and is untimed; seed0's
    # clock steps back by 4 s at 3000 (a resume of the old scripts): its running maximum, 30 s.
    for seed, last in ((0, 5000), (1, 4000)):
        metrics = {"eval/return": [(step, step / 1000 + seed) for step in STEPS if step <= last]}
        if seed == 0:
            clock = [(1000, 10), (2000, 20), (2500, 30), (3000, 26), (4000, 40), (5000, 50)]
            metrics["time/elapsed_s"] = clock
        write_run(root, "ant", "flow_wm", seed, metrics)
    # anymal/baseline: one untimed seed.
    write_run(root, "anymal", "baseline", 0, {"eval/return": [(1000, -5.0), (2000, -1.0)]})
    return root


def test_read_scalar_keeps_the_resumed_rows(report, tmp_path):
    path = tmp_path / "return.csv"
    # Checkpoint at 200, crash after 300: the resumed run logs 300 again, then goes on.
    path.write_text("100,1.0\n200,2.0\n300,3.0\n400,4.0\n300,30.0\n400,40.0\n500,50.0\n")
    steps, values = report.read_scalar(path)
    np.testing.assert_array_equal(steps, [100, 200, 300, 400, 500])
    np.testing.assert_array_equal(values, [1, 2, 30, 40, 50])


def test_align_interpolates_on_the_union_grid_and_stops_at_the_shortest(report):
    curves = [
        (np.array([0.0, 10, 20, 30]), np.array([0.0, 10, 20, 30])),
        (np.array([5.0, 15, 20]), np.array([0.0, 20, 30])),
    ]
    grid, values = report.align(curves)
    np.testing.assert_array_equal(grid, [5, 10, 15, 20])
    np.testing.assert_allclose(values, [[5, 10, 15, 20], [0, 10, 20, 30]])
    with pytest.raises(ValueError, match="do not overlap"):
        report.align([(np.array([0.0, 1]), np.zeros(2)), (np.array([2.0, 3]), np.zeros(2))])


@pytest.mark.parametrize(
    ("initial", "final", "expected"),
    [
        # base -100, best 100: threshold -100 + 0.1 * 200 = -80 (strict: -80 is not collapsed).
        ([-100, -90, -95], [100, -80, -85], 1),
        ([0, 0, 0], [10, 0.9, 1.0], 1),
        # Nobody ended above the worst start: nothing to collapse from.
        ([5, 6, 7], [4, 3, 5], 0),
    ],
)
def test_count_collapsed(report, initial, final, expected):
    assert report.count_collapsed(np.array(initial), np.array(final), 0.1) == expected


def test_series_label_counts_seeds(report):
    assert report.series_label("sac", 1) == "sac (1 seed)"
    assert report.series_label("baseline", 3) == "baseline (3 seeds)"


def test_report_table_curves_and_data_copy(report, runs, tmp_path):
    out = tmp_path / "out"
    with pytest.warns(UserWarning) as record:
        results = report.main(
            [str(runs), "--out", str(out), "--copy-data", str(tmp_path / "data"), *REPS]
        )
    messages = [str(w.message) for w in record]
    by_group = {(r.task, r.variant): r for r in results}

    ant = by_group["ant", "baseline"]
    # Finals 1, 2, 6, 0: IQM = mean of the middle two = 1.5 (the mean would be 2.25).
    assert ant.final_iqm == pytest.approx(1.5)
    assert ant.ci_low <= 1.5 <= ant.ci_high
    assert 0 <= ant.ci_low < ant.ci_high <= 6
    # base = 0 (every start), best = 6: threshold 0.6, only the seed ending at 0 collapsed.
    assert ant.collapsed == 1
    assert (ant.seeds, ant.frames) == (4, 5000)
    assert ant.final_episode_length == pytest.approx(250)
    np.testing.assert_allclose(ant.steps.x, STEPS)
    np.testing.assert_allclose(ant.steps.mean, [0, 2, 1.25, 2.25, 3.25])
    # elapsed = step / 100: the eval steps map to 10..50 s.
    np.testing.assert_allclose(ant.wallclock.x, [10, 20, 30, 40, 50])
    np.testing.assert_allclose(ant.wallclock.mean, ant.steps.mean)

    flow = by_group["ant", "flow_wm"]
    assert flow.frames == 4000
    np.testing.assert_allclose(flow.steps.x, STEPS[:4])
    np.testing.assert_allclose(flow.steps.mean, np.array(STEPS[:4]) / 1000 + 0.5)
    assert flow.final_iqm == pytest.approx(np.mean([3.0, 4.0]))  # seed0 (2+3+4)/3, seed1 (3+4+5)/3
    assert np.isnan(flow.final_episode_length)
    # Only seed0 is timed, and only up to the group's 4000 frames.
    assert flow.wallclock.seeds == 1
    np.testing.assert_allclose(flow.wallclock.x, [10, 20, 30, 40])
    assert "ant/flow_wm seed1: time/elapsed_s missing" in messages
    assert "ant/flow_wm seed0: time/elapsed_s steps back by up to 4.0 s" in " ".join(messages)
    assert any("seed1 only to 4,000" in m for m in messages)
    assert any("anymal: no time/elapsed_s; wall-clock plot skipped" in m for m in messages)

    for name in ("ant_steps.png", "ant_wallclock.png", "anymal_steps.png"):
        assert (out / name).stat().st_size > 1000
    assert not (out / "anymal_wallclock.png").exists()
    with (out / "learning_table.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["task"], r["variant"]) for r in rows] == [
        ("ant", "baseline"),
        ("ant", "flow_wm"),
        ("anymal", "baseline"),
    ]
    assert float(rows[0]["final_iqm"]) == pytest.approx(1.5) and rows[0]["collapsed"] == "1"
    markdown = (out / "learning_table.md").read_text()
    assert "final_s < base + f · (best − base)" in markdown and "f = 0.1 (" in markdown
    assert "| ant | baseline | 4 | 5,000 | 1.5 [" in markdown

    copied = tmp_path / "data" / "ant" / "baseline" / "seed3"
    assert sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*.csv")) == [
        "eval/episode_length.csv",
        "eval/forward_velocity.csv",
        "eval/return.csv",
        "time/elapsed_s.csv",
    ]
    # The committed layout gives the same table.
    with pytest.warns(UserWarning):
        again = report.main([str(tmp_path / "data"), "--out", str(tmp_path / "out2"), *REPS])
    assert [(r.final_iqm, r.ci_low, r.collapsed) for r in again] == [
        (r.final_iqm, r.ci_low, r.collapsed) for r in results
    ]


def test_same_run_in_two_folders_is_an_error(report, tmp_path):
    for root in ("a", "b"):
        write_run(tmp_path / root, "ant", "sac", 0, {"eval/return": [(1, 1.0)]})
    with pytest.raises(ValueError, match="two runs for task 'ant', variant 'sac', seed 0"):
        report.find_runs([tmp_path / "a", tmp_path / "b"])


def test_seeds_that_do_not_overlap_stop_the_report(report, tmp_path):
    write_run(tmp_path, "ant", "sac", 0, {"eval/return": [(100, 1.0), (200, 1.0)]})
    write_run(tmp_path, "ant", "sac", 1, {"eval/return": [(300, 1.0), (400, 1.0)]})
    with pytest.raises(SystemExit, match="seed1 starts at 300 frames, after seed0 ends"):
        report.main([str(tmp_path), "--out", str(tmp_path / "out"), *REPS])


def _write_config(root: Path, task: str, variant: str, seed: int, lr: float) -> Path:
    run_dir = root / task / variant / f"seed{seed}"
    (run_dir / "config.yaml").write_text(f"seed: {seed}\nalgo:\n  actor_lr: {lr}\n")
    return run_dir


def test_runs_differing_beyond_the_seed_are_not_grouped(report, tmp_path):
    for seed, lr in ((0, 0.001), (1, 0.001), (2, 0.01)):
        write_run(tmp_path, "ant", "sac", seed, {"eval/return": [(100, 1.0), (200, 2.0)]})
        _write_config(tmp_path, "ant", "sac", seed, lr)
    with pytest.raises(
        SystemExit,
        match=(
            r"'sac' runs on 'ant' differ beyond the seed: "
            r"algo.actor_lr {'seed0': 0.001, 'seed1': 0.001, 'seed2': 0.01}"
        ),
    ):
        report.main([str(tmp_path), "--out", str(tmp_path / "out"), *REPS])


def test_configs_travel_with_copied_data_and_seeds_may_differ(report, tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        write_run(runs, "ant", "sac", seed, {"eval/return": [(100, 1.0), (200, 2.0)]})
        run_dir = _write_config(runs, "ant", "sac", seed, 0.001)
        (run_dir / "provenance.json").write_text('{"starts": []}\n')
    data = tmp_path / "data"
    report.main([str(runs), "--out", str(tmp_path / "out"), "--copy-data", str(data), *REPS])
    copied = data / "ant" / "sac" / "seed1"
    assert (copied / "config.yaml").read_text() == "seed: 1\nalgo:\n  actor_lr: 0.001\n"
    assert (copied / "provenance.json").is_file()
    assert report.config_differences(report.find_runs([data])) == {}
