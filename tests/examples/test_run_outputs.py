"""What a run's outputs say (issue 27): the task as configured, reference lines and the title of
the learning curve, standard errors, a non-empty run log, and a quiet console (no CUDA warning on
CPU, no colour codes when redirected, no warning our code causes, one line on Ctrl-C)."""

from __future__ import annotations

import ast
import logging
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from torchrl_flowmbpo.trainers import format_return, logs
from torchrl_flowmbpo.trainers import reporting as reporting_module
from torchrl_flowmbpo.trainers.factories import count_iterations, lr_decay_steps
from torchrl_flowmbpo.trainers.tasks import task_label


@pytest.fixture(scope="module")
def support():
    # What the training scripts call to name, log and report a run.
    return SimpleNamespace(
        task_label=task_label,
        task_references=reporting_module.task_references,
        format_return=format_return,
        log_to_file=logs.log_to_file,
        report=logs.report,
    )


@pytest.fixture(scope="module")
def reporting():
    return reporting_module


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter, output captured (a pipe)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("name", "kwargs", "label"),
    [
        ("cartpole", {"start_angle": 0.0}, "cartpole_balance"),
        ("cartpole", {"start_angle": 0, "episode_length": 100}, "cartpole_balance"),
        ("cartpole", {}, "cartpole"),  # the swing-up
        ("cartpole", {"start_angle": 3.14159}, "cartpole"),
        ("ant", {}, "ant"),
    ],
)
def test_task_label_names_the_task_as_configured(support, name, kwargs, label):
    assert support.task_label(name, kwargs) == label


def test_references_are_the_committed_measurements_of_exactly_that_task(support):
    # docs/data/task_references.csv, from studies/task_references.py (docs/tasks.md).
    balance = support.task_references("cartpole", {"start_angle": 0.0})
    assert balance == pytest.approx({"zero": -397.34, "random": -1174.50, "pd": -1.39})
    swing_up = support.task_references("cartpole", {})
    assert swing_up["zero"] == pytest.approx(-2299.90)
    assert swing_up["random"] == pytest.approx(-2003.76)
    # Other keyword arguments make another task: no reference is better than a wrong one.
    assert support.task_references("cartpole", {"start_angle": 0.0, "episode_length": 100}) == {}
    humanoid = support.task_references("humanoid", {})
    assert humanoid == pytest.approx({"zero": 72.48, "random": 47.86})
    assert support.task_references("humanoid", {"episode_length": 100}) == {}


def test_format_return_gives_the_standard_error(support):
    # Population std 3 over 10 episodes: standard error 3 / sqrt(9) = 1.
    stats = {"episodes": 10.0, "return_mean": -451.04, "return_std": 3.0}
    assert support.format_return(stats) == "return -451.0 ± 1.0 (s.e.)"
    one = {"episodes": 1.0, "return_mean": 2.0, "return_std": 0.0}
    assert support.format_return(one) == "return 2.0 (1 episode: no s.e.)"


def test_learning_curve_title_and_reference_lines(reporting):
    history = {"train/return": [[100, -900.0], [200, -500.0]], "eval/return": [[200, -450.0]]}
    title = reporting.curve_title("flow_wm", "cartpole_balance", 3)
    fig = reporting.learning_curve_figure(
        history, title=title, references={"zero": -397.3, "random": -1174.5, "pd": -1.4}
    )
    (ax,) = fig.axes
    assert ax.get_title() == "flow_wm on cartpole_balance, seed 3"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["zero action (-397)"].get_ydata()[0] == pytest.approx(-397.3)
    assert lines["uniform random actions (-1,174)"].get_ydata()[0] == pytest.approx(-1174.5)
    assert lines["scripted PD balancer (-1)"].get_ydata()[0] == pytest.approx(-1.4)
    assert {"train/return", "eval/return"} <= set(lines)


def test_report_prints_and_writes_to_the_run_log_only_once(support, tmp_path, capsys):
    handler = logging.FileHandler(tmp_path / "job.log")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        support.report("Checkpoint: here")
        support.log_to_file("Config: only in the file")
    finally:
        root.removeHandler(handler)
        handler.close()
    assert capsys.readouterr().out == "Checkpoint: here\n"
    assert (tmp_path / "job.log").read_text().splitlines() == [
        "Checkpoint: here",
        "Config: only in the file",
    ]


def test_ctrl_c_exits_130_with_one_line():
    run = run_python(
        "from torchrl_flowmbpo.trainers.console import interrupted\n"
        "with interrupted('pwm_flow.py'):\n"
        "    raise KeyboardInterrupt\n"
    )
    assert run.returncode == 130
    assert run.stderr.strip().splitlines() == ["pwm_flow.py: interrupted (Ctrl-C)."]


def test_redirected_torchrl_log_lines_have_no_colour_codes():
    code = (
        "import torchrl\nfrom torchrl._utils import logger\n"
        "logger.info('raw'); from torchrl_flowmbpo.trainers.console import plain_torchrl_console\n"
        "plain_torchrl_console(); logger.info('plain')\n"
    )
    out = run_python(code).stdout.splitlines()
    raw, plain = [s for s in out if "raw" in s], [s for s in out if "plain" in s]
    assert "\x1b[" in raw[0]  # TorchRL's own formatter: the reason for the fix
    assert "\x1b[" not in plain[0] and plain[0].endswith("[torchrl][INFO] plain")


def test_warp_initialises_without_the_cuda_driver_warning_on_cpu():
    run = run_python(
        "from torchrl_flowmbpo.trainers.console import init_warp_quietly\n"
        "init_warp_quietly('cpu')\n"
    )
    assert run.returncode == 0, run.stderr
    assert "CUDA driver. GPU execution" not in run.stderr
    assert "CUDA driver not available" not in run.stdout  # nor Warp's banner


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def main_guard(script: Path) -> ast.If:
    tree = ast.parse(script.read_text())
    return next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
    )


@pytest.mark.parametrize("script", sorted(EXAMPLES.glob("*.py")), ids=lambda path: path.name)
def test_every_script_turns_ctrl_c_into_one_line(script):
    (body,) = main_guard(script).body
    assert isinstance(body, ast.With), f"{script.name}: main() outside interrupted(...)"
    assert ast.unparse(body.items[0].context_expr) == f"interrupted({script.name!r})"


@pytest.mark.parametrize("script", ["model_probe.py", "gradient_check.py"])
def test_checkpoint_scripts_are_quiet_on_cpu(script, make_checkpoint, tmp_path):
    make_checkpoint(tmp_path / "run" / "checkpoints")
    args = ["--states" if script == "gradient_check.py" else "--envs", "2"]
    args += ["--horizon", "2"] if script == "gradient_check.py" else ["--horizons", "2"]
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / script), str(tmp_path / "run"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "warning" not in run.stderr.lower(), run.stderr[-3000:]  # Warp's CUDA line included
    assert "\x1b[" not in run.stdout + run.stderr


@pytest.fixture(scope="module")
def balance_run(scripts):
    """A tiny pwm_flow.py run on the default task (the cartpole started upright)."""
    overrides = (
        "env=cartpole_balance env.num_envs=4 collector.total_frames=512 eval.episodes=2 "
        "eval.num_envs=2 seed=1 algo.target_critic=true hydra.run.dir=DIR"
    )
    return scripts.start_training(overrides).result().check()


def test_training_run_says_what_ran_in_its_log_and_folders(balance_run):
    run_dir = balance_run.run_dir
    first = next(s for s in balance_run.stdout.splitlines() if s.startswith("pwm_flow.py: "))
    assert first.startswith("pwm_flow.py: flow_wm on cartpole_balance, seed 1, 512 frames")
    assert str(run_dir) in first
    (log_dir,) = (run_dir / "logs").iterdir()
    assert log_dir.name == "flow_wm_cartpole_balance_seed1"
    log = (run_dir / "pwm_flow.log").read_text()
    assert first in log and "start_angle: 0.0" in log  # the run line and the config
    assert "Evaluation (2 episodes, deterministic): return " in log and "(s.e.)" in log
    checkpoint = next(s for s in balance_run.stdout.splitlines() if s.startswith("Checkpoint: "))
    assert checkpoint in log


def test_training_run_is_quiet(balance_run):
    assert "\x1b[" not in balance_run.stdout  # redirected: no colour codes
    # nor the cursor moves of a second progress bar (the world-model warm-up's)
    assert "\x1b[" not in balance_run.stderr
    assert "world-model warm-up" in balance_run.stderr  # its progress is still shown
    stderr = balance_run.stderr.lower()
    assert "warning" not in stderr, balance_run.stderr[-3000:]  # CUDA, batch sizes, targets


@pytest.mark.parametrize(
    ("folder", "parts"),
    [
        ("flow_wm_cartpole_balance_seed0", ("flow_wm", "cartpole_balance", "0")),
        ("full_flow_cartpole_seed12", ("full_flow", "cartpole", "12")),
        ("baseline_ant_seed1", ("baseline", "ant", "1")),
    ],
)
def test_learning_report_reads_the_configured_task_from_log_folders(load_script, folder, parts):
    script = Path(__file__).resolve().parents[2] / "studies" / "learning_report.py"
    match = load_script(script, "learning_report").LOG_NAME.match(folder)
    assert (match["variant"], match["task"], match["seed"]) == parts


def test_count_iterations_is_what_the_run_performs(balance_run):
    # 8 batches of 64 frames; the 2nd fills the 128 random frames and trains: 7 iterations.
    cfg = OmegaConf.load(balance_run.run_dir / "config.yaml")
    checkpoint = next(s for s in balance_run.stdout.splitlines() if s.startswith("Checkpoint: "))
    iterations = int(re.search(r"checkpoint-(\d+)\.torchrl", checkpoint)[1])
    assert count_iterations(cfg) == iterations == 7
    assert lr_decay_steps(cfg) == 6  # the last iteration runs at final_lr
