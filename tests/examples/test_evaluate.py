"""examples/evaluate.py: rebuild from a checkpoint alone, deterministic real-env evaluation, one
CSV row per call, one-line errors for bad checkpoints."""

from __future__ import annotations

import csv
import math
import re

import pytest

COLUMNS = [
    "task",
    "variant",
    "seed",
    "actor_type",
    "world_model_type",
    "integrator",
    "flow_steps",
    "episodes",
    "return_mean",
    "return_std",
    "length_mean",
    "length_std",
    "return_per_step",
    "forward_velocity",
    "time_limit_fraction",
    "stands_still",
    "falls",
    "checkpoint",
    "iteration",
    "frames",
]
FLOATS = COLUMNS[8:15]  # return_mean ... time_limit_fraction; forward_velocity: ant only
EVAL_ARGS = ("--episodes", "2", "--num-envs", "2", "--threads", "1")


@pytest.fixture(scope="module")
def evaluations(scripts, bundle_runs, tmp_path_factory):
    bundle_runs.start("baseline", "flow_wm")
    baseline, flow = bundle_runs.get("baseline"), bundle_runs.get("flow_wm")
    tmp = tmp_path_factory.mktemp("evaluate")
    corrupt = tmp / "checkpoint_3.pt"
    corrupt.write_bytes(b"not a checkpoint")
    (tmp / "empty_run").mkdir()
    stale_csv = tmp / "stale.csv"
    stale_csv.write_text("task,variant,seed,return_mean\nant,baseline,0,12.5\n")
    checkpoint = baseline.run_dir / "checkpoints" / "checkpoint-000000000004.torchrl"
    as_file = scripts.start_evaluation(checkpoint, *EVAL_ARGS)
    flow_eval = scripts.start_evaluation(flow.run_dir, *EVAL_ARGS, "--csv", tmp / "flow.csv")
    errors = {
        "missing": (tmp / "missing.pt", scripts.start_evaluation(tmp / "missing.pt")),
        "corrupt": (corrupt, scripts.start_evaluation(corrupt)),
        "empty": (tmp / "empty_run", scripts.start_evaluation(tmp / "empty_run")),
    }
    stale = scripts.start_evaluation(checkpoint, *EVAL_ARGS, "--csv", stale_csv)
    as_file = as_file.result().check()
    # Same default CSV and seed: appends a second row that must equal the first.
    as_dir = scripts.start_evaluation(baseline.run_dir, *EVAL_ARGS).result().check()
    return {
        "baseline": baseline,
        "flow": flow,
        "checkpoint": checkpoint,
        "as_file": as_file,
        "as_dir": as_dir,
        "flow_eval": flow_eval.result().check(),
        "flow_csv": tmp / "flow.csv",
        "errors": {name: (path, run.result()) for name, (path, run) in errors.items()},
        "stale": (stale_csv, stale.result()),
    }


def read_rows(path):
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def check_row(row):
    assert int(row["seed"]) == 1
    assert int(row["episodes"]) == 2
    for name in FLOATS:
        assert math.isfinite(float(row[name])), name
    assert 0 < float(row["length_mean"]) <= 100  # env.kwargs.episode_length=100
    assert 0.0 <= float(row["time_limit_fraction"]) <= 1.0
    assert row["stands_still"] in ("0", "1") and row["falls"] in ("0", "1")


def test_default_csv_gets_one_header_and_a_row_per_call(evaluations):
    rows = read_rows(evaluations["baseline"].run_dir / "evaluation.csv")
    assert len(rows) == 2
    row = rows[0]
    check_row(row)
    assert (row["task"], row["variant"]) == ("ant", "baseline")
    assert (row["actor_type"], row["world_model_type"]) == ("gaussian", "mlp")
    assert (row["integrator"], row["flow_steps"]) == ("", "")  # MLP world model
    assert row["checkpoint"] == str(evaluations["checkpoint"].resolve())
    assert (int(row["iteration"]), int(row["frames"])) == (4, 320)


def test_file_and_run_dir_forms_give_identical_results(evaluations):
    first, second = read_rows(evaluations["baseline"].run_dir / "evaluation.csv")
    assert first == second  # the run dir resolves to the same latest checkpoint, same seed


def test_summary_line(evaluations):
    out = evaluations["as_file"].stdout
    (line,) = [s for s in out.splitlines() if s.startswith("Evaluation of baseline on ant")]
    assert "eval seed 1001" in line and "2 episodes" in line and " (s.e.), std " in line
    assert ", forward velocity " in line and " m/s, time limit " in line
    assert "Row appended to" in out


def test_flow_world_model_row_reproduces_the_training_evaluation(evaluations, read_scalars):
    (row,) = read_rows(evaluations["flow_csv"])
    check_row(row)
    assert (row["variant"], row["actor_type"], row["world_model_type"]) == (
        "flow_wm",
        "gaussian",
        "flow",
    )
    assert (row["integrator"], row["flow_steps"]) == ("heun", "4")
    assert (int(row["iteration"]), int(row["frames"])) == (7, 512)
    # Training evaluated once (at the end) on a fresh env with seed + 1000 and 2 envs: the same
    # protocol, so the rebuilt policy scores the same return.
    (log_dir,) = (evaluations["flow"].run_dir / "logs").iterdir()
    _, returns = read_scalars(log_dir / "scalars" / "eval/return.csv")
    assert float(row["return_mean"]) == pytest.approx(returns[-1], rel=1e-4)
    _, velocities = read_scalars(log_dir / "scalars" / "eval/forward_velocity.csv")
    assert float(row["forward_velocity"]) == pytest.approx(velocities[-1], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("case", ["missing", "corrupt", "empty"])
def test_bad_checkpoint_exits_2_with_one_line(evaluations, case):
    path, run = evaluations["errors"][case]
    assert run.returncode == 2
    # The progress line of a checkpoint that exists comes first; then one line, no traceback.
    lines = [s for s in run.stderr.strip().splitlines() if not s.startswith("Loading ")]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("evaluate.py: error: ") and str(path) in lines[0]
    assert not (path.parent / "evaluation.csv").exists()


def test_csv_of_other_columns_exits_2_before_evaluating_and_is_kept(evaluations):
    path, run = evaluations["stale"]
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("evaluate.py: error: ") and str(path) in lines[0]
    assert "pass --csv with a new file" in lines[0]
    assert run.stdout == ""  # no episodes ran, no summary
    assert path.read_text() == "task,variant,seed,return_mean\nant,baseline,0,12.5\n"


def test_balance_evaluation_names_the_task_shows_progress_and_standard_error(
    scripts, make_checkpoint, tmp_path
):
    # A tiny checkpoint of the cartpole started upright (start_angle 0), 6 episodes.
    checkpoint = make_checkpoint(tmp_path / "checkpoints")
    run = scripts.start_evaluation(checkpoint, "--episodes", "6", "--num-envs", "3")
    run = run.result().check()
    (line,) = [s for s in run.stdout.splitlines() if s.startswith("Evaluation of ")]
    assert line.startswith("Evaluation of baseline on cartpole_balance (seed 3, iteration 7")
    mean, se = re.search(r"6 episodes, return (-?[\d.]+) ± ([\d.]+) \(s\.e\.\)", line).groups()
    (row,) = read_rows(tmp_path / "evaluation.csv")
    # Population std over the 6 episodes: the standard error is std / sqrt(5).
    assert float(se) == pytest.approx(float(row["return_std"]) / math.sqrt(5), abs=0.051)
    assert float(mean) == pytest.approx(float(row["return_mean"]), abs=0.051)
    assert "[" not in line  # no stands_still / falls on a cartpole
    assert row["task"] == "cartpole_balance"
    assert (row["stands_still"], row["falls"], row["forward_velocity"]) == ("", "", "")
    # Progress on stderr (the load, the episode bar's end) and no CUDA warning on a CPU run.
    assert "Loading " in run.stderr and "6/6" in run.stderr
    assert "CUDA driver" not in run.stderr and "warning" not in run.stderr.lower()
