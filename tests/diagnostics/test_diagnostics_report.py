"""examples/diagnostics_report.py on a fake run directory of TorchRL CSV logs."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from torchrl_flowmbpo.diagnostics import (
    METRIC_PREFIXES,
    action_gradient_accuracy,
    actor_gradient_split,
    behaviour_probe,
    critic_vs_returns,
    exploitation_gap,
    horizon_return_gap,
    imagination_vs_real,
    reference_behaviours,
    scalar_metrics,
    termination_calibration,
)
from torchrl_flowmbpo.diagnostics import report as report_module
from torchrl_flowmbpo.modules import GaussianActor, VCritic
from torchrl_flowmbpo.modules.models import PWMWorldModel
from torchrl_flowmbpo.objectives import PWMActorLoss

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "diagnostics_report.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(load_script):
    # The package's report, and the command line over it.
    cli = load_script(SCRIPT, "diagnostics_report")
    return SimpleNamespace(
        PANELS=report_module.PANELS,
        make_report=report_module.make_report,
        read_scalars=report_module.read_scalars,
        main=cli.main,
    )


def fake_run(root: Path, metrics: dict[str, list[tuple[int, float]]], exp="baseline_ant_seed0"):
    """A run dir laid out as TorchRL's CSVLogger writes it: rows ``step,value``, no header."""
    for name, rows in metrics.items():
        path = root / "logs" / exp / "scalars" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{step},{value}\n" for step, value in rows))
    return root


METRICS = {
    "train/return": [(1024, 12.0), (2048, 20.5), (3072, 18.0)],
    "eval/return": [(3072, 25.0)],
    "diagnostics/reward_corr_mean": [(2048, 0.6), (3072, 0.9)],
    "diagnostics/termination_ratio": [(2048, 0.03), (3072, 0.05)],
    "diagnostics/critic_bias": [(2048, 40.0), (3072, float("nan"))],
    "diagnostics/exploitation_gap": [(2048, 120.0), (3072, 180.0)],
    "loss/actor": [(2048, 1.0)],
}


def test_reads_csv_logger_layout(report, tmp_path):
    run = fake_run(tmp_path, METRICS)
    scalars = report.read_scalars(run / "logs" / "baseline_ant_seed0" / "scalars")
    assert scalars["train/return"] == ([1024.0, 2048.0, 3072.0], [12.0, 20.5, 18.0])
    assert scalars["diagnostics/critic_bias"][1][0] == 40.0
    assert math.isnan(scalars["diagnostics/critic_bias"][1][1])


def test_writes_png_and_lists_missing_metrics(report, tmp_path):
    run = fake_run(tmp_path, METRICS)
    path, missing = report.make_report(run)
    assert path == run / "diagnostics.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert "diagnostics/latent_error_last" in missing
    assert "diagnostics/termination_ratio" not in missing
    assert "train/return" not in missing


def test_cli_on_a_fake_run(tmp_path):
    run = fake_run(tmp_path / "run", METRICS)
    fake_run(run, {"train/return": [(1024, 5.0)]}, exp="flow_wm_ant_seed0")  # two experiments
    out = tmp_path / "report.png"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(run), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert "Skipped (not logged):" in result.stdout and "diagnostics/critic_corr" in result.stdout


def test_run_without_logs_fails_cleanly(report, tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 1
    assert "No CSV logs" in capsys.readouterr().err
    fake_run(tmp_path, {"loss/actor": [(1, 1.0)]})
    assert report.main([str(tmp_path)]) == 1
    assert "None of the diagnostic" in capsys.readouterr().err


class StillEnv:
    """Four worlds whose observation never changes, reward 1 per step, never terminating."""

    def set_seed(self, seed):
        self.obs = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed))

    def reset(self):
        return TensorDict(observation=self.obs.clone())

    def step(self, td):
        td["next"] = TensorDict(
            observation=self.obs.clone(),
            reward=torch.ones(4, 1),
            terminated=torch.zeros(4, 1, dtype=torch.bool),
        )
        return td

    def step_mdp(self, td):
        return TensorDict(observation=td["next", "observation"])


def test_logged_names_documented_and_plotted(report):
    """Every scalar a diagnostic logs is defined in docs/metrics.md, and every diagnostic the
    report plots is one of them."""
    wm = PWMWorldModel(3, 2, latent_dim=16, units=(32,), encoder_units=(32,))
    data = TensorDict(
        {
            "observation": torch.randn(4, 5, 3),
            ("next", "observation"): torch.randn(4, 5, 3),
            "action": torch.zeros(4, 5, 2),
            ("next", "reward"): torch.randn(4, 5, 1),
            ("next", "done"): torch.zeros(4, 5, 1, dtype=torch.bool),
            ("next", "terminated"): torch.zeros(4, 5, 1, dtype=torch.bool),
        },
        batch_size=[4, 5],
    )
    results = {
        "imagination_vs_real": imagination_vs_real(wm, data, horizon=3),
        "termination_calibration": termination_calibration(wm, data),
        "critic_vs_returns": critic_vs_returns(VCritic(16, hidden=(8,)), wm, data, gamma=0.5),
        "exploitation_gap": exploitation_gap(1.0, 1.0, gamma=0.5),
        "horizon_return_gap": horizon_return_gap(
            wm, GaussianActor(16, 2, hidden=(8,)), data, horizon=3, gamma=0.5
        ),
        "action_gradient_accuracy": action_gradient_accuracy(
            wm,
            data["observation"][:, 0],
            data["action"],
            lambda o, a: a.sum((1, 2)),
            gamma=0.5,
            reference_eps=0.01,  # its optional metrics are documented too
        ),
        "actor_gradient_split": actor_gradient_split(
            PWMActorLoss(
                GaussianActor(16, 2, hidden=(8,)), VCritic(16, hidden=(8,)), wm, horizon=3
            ),
            data[:, 0],
        ),
        "behaviour_probe": behaviour_probe(
            wm,
            StillEnv(),
            reference_behaviours(
                TensorDictModule(lambda o: o[..., :2].tanh(), ["observation"], ["action"]),
                "anymal",  # no scripted controller: zero, random and the policy
                2,
            ),
            horizons=[3],
            seed=0,
        ),
    }

    def generic(name: str) -> str:  # one documented row stands for every behaviour
        return re.sub(r"probe_(zero|random|policy|pd|trot)_", "probe_<b>_", name)

    logged = set()
    for name, result in results.items():
        logged |= {generic(n) for n in scalar_metrics(result, METRIC_PREFIXES[name])}
    smoothed = action_gradient_accuracy(  # the metrics only the smoothed comparison has
        wm,
        data["observation"][:, 0],
        data["action"],
        lambda o, a: a.sum((1, 2)),
        gamma=0.5,
        smoothing=0.1,
        smoothing_samples=4,
    )
    logged |= set(scalar_metrics(smoothed, METRIC_PREFIXES["action_gradient_accuracy"]))
    docs = (SCRIPT.parents[1] / "docs" / "metrics.md").read_text().split("## Diagnostics")[1]
    documented = set(re.findall(r"`(diagnostics/[a-z_<>]+)`", docs))
    assert logged == documented
    plotted = {generic(n) for _, names, _, _ in report.PANELS for n in names if n[:4] == "diag"}
    assert plotted <= logged
