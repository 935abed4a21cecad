"""studies/model_gradients.py: behaviour policy and a tiny end-to-end row."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import model_gradients as bench  # studies/ is on pytest's pythonpath (pyproject.toml)
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "model_gradients.py"


def test_behaviour_policy_alternates_random_and_pumping():
    obs = torch.zeros(6, 5)
    obs[:, 2], obs[:, 4] = 1.0, 2.0  # cos θ = 1, θ̇ = 2: pumping pushes +1
    generator = torch.Generator().manual_seed(0)
    actions = torch.stack([bench.behaviour_action(obs, generator) for _ in range(400)])
    assert actions.shape == (400, 6, 1) and float(actions.abs().max()) <= 1.0
    pumping, random = actions[:, 1::2], actions[:, 0::2]
    # sign(θ̇ cos θ) + 0.5·N(0, 1), clamped: mean ≈ E[min(1, 1 + 0.5 ε)] ≈ 0.80.
    assert 0.75 < float(pumping.mean()) < 0.85
    assert abs(float(random.mean())) < 0.06 and 0.5 < float(random.std()) < 0.65


def test_tiny_run_writes_a_finite_row(tmp_path):
    out = tmp_path / "rows.csv"
    cmd = [
        sys.executable, str(SCRIPT), "--variant", "small", "--envs", "4", "--episodes", "1",
        "--steps", "3", "--batch", "8", "--states", "8", "--csv", str(out),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "data: 960 frames (bounded reward); 3 WM steps" in result.stdout
    (row,) = list(csv.DictReader(out.open()))
    assert row["variant"] == "small" and row["steps"] == "3"
    for key in ("value_corr", "grad_cos_mean", "sign_agreement", "norm_ratio"):
        assert math.isfinite(float(row[key])), (key, row[key])
    assert len(row["cos_per_step"].split()) == bench.HORIZON
