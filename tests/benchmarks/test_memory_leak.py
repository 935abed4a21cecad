"""The pure parts of benchmarks/memory_leak.py: the fit and verdict, /proc readers, progress."""

from __future__ import annotations

import math
import os
import subprocess

import memory_leak as bench  # benchmarks/ is on pytest's pythonpath (pyproject.toml)
import pytest


def _samples(rss_of_iteration, iterations: int = 300, per_iteration: int = 2):
    """``per_iteration`` samples per iteration, RSS from ``rss_of_iteration``, 512 frames each."""
    return [
        bench.Sample(float(i), it, 512 * it, rss_of_iteration(it, k), 3)
        for i, (it, k) in enumerate(
            (it, k) for it in range(iterations + 1) for k in range(per_iteration)
        )
    ]


def _summarize(samples):
    return bench.summarize(samples, warmup=0.2, max_slope=1.0, max_growth_pct=5.0)


def test_flat_after_warm_up_passes():
    # Steep rise during warm-up, then flat with +-3 MB alternating noise: only the flat part counts.
    def rss(it, k):
        return 200 + 8 * min(it, 60) + (3 if (it + k) % 2 else -3)

    summary = _summarize(_samples(rss))
    assert summary.warmup_iteration == 60
    assert summary.last_iteration == 300
    assert summary.samples == 2 * (300 - 60)
    assert abs(summary.slope_mb_per_100) < 0.01
    assert 0 < summary.slope_se_mb_per_100 < 0.2  # +-3 MB noise on 480 samples
    assert abs(summary.growth_mb) < 0.1
    assert summary.passed


def test_linear_growth_fails_with_the_right_slope():
    # 20 KB per iteration: 2 MB / 100 iterations, 4.8 MB (0.6 %) over iterations 60..300.
    summary = _summarize(_samples(lambda it, k: 800 + 0.02 * it))
    assert math.isclose(summary.slope_mb_per_100, 2.0, rel_tol=1e-9)
    assert summary.slope_se_mb_per_100 < 1e-6  # exact line
    assert math.isclose(summary.growth_mb, 0.02 * 240, rel_tol=1e-9)
    assert math.isclose(summary.growth_pct, 100 * 4.8 / 801.2, rel_tol=1e-9)
    assert not summary.passed


def test_large_relative_growth_fails_under_the_slope_bound():
    # 0.9 MB / 100 iterations over iterations 2,000..10,000: +72 MB, 61 % of 118 MB.
    samples = _samples(lambda it, k: 100 + 0.009 * it, iterations=10_000, per_iteration=1)
    summary = _summarize(samples)
    assert summary.slope_mb_per_100 < 1.0
    assert math.isclose(summary.growth_pct, 100 * 72 / 118, rel_tol=1e-9)
    assert not summary.passed


def test_samples_after_the_last_iteration_are_left_out():
    # The final evaluation and checkpoint run once, at the last iteration count.
    samples = _samples(lambda it, k: 500.0)
    samples += [bench.Sample(1e4, 300, 512 * 300, 900.0, 3)] * 10
    summary = _summarize(samples)
    assert summary.rss_peak_mb == 500.0
    assert summary.passed


def test_too_few_samples_raise():
    with pytest.raises(ValueError, match="post-warm-up samples"):
        _summarize(_samples(lambda it, k: 500.0, iterations=2, per_iteration=1))


def test_rss_of_this_process_and_of_its_tree():
    own = bench.read_rss_mb(os.getpid())
    assert 1 < own < 1e6
    child = subprocess.Popen(["sleep", "10"])
    try:
        assert child.pid in bench.process_tree(os.getpid())
        total, count = bench.tree_rss_mb(os.getpid())
        assert count >= 2
        assert total > own * 0.9  # this process's RSS can shrink between the two reads
    finally:
        child.kill()
        child.wait()
    with pytest.raises(FileNotFoundError):
        bench.read_rss_mb(child.pid)


def test_training_progress_reads_the_world_model_loss_csv(tmp_path):
    assert bench.training_progress(tmp_path) == (0, 0)
    scalars = tmp_path / "logs" / "full_flow_cartpole_seed0" / "scalars"
    (scalars / "loss").mkdir(parents=True)
    (scalars / "loss" / "world_model.csv").write_text("4096,0.5\n4608,0.4\n5120,0.3\n")
    (scalars / "time").mkdir()
    (scalars / "time" / "fps.csv").write_text("4096,90.0\n")
    assert bench.training_progress(tmp_path) == (3, 5120)
    assert bench.logged_scalars(tmp_path) == 4


def test_from_csv_writes_the_plot_and_returns_the_verdict(tmp_path):
    csv_path = tmp_path / "memory.csv"
    rows = [",".join(bench.FIELDS)]
    rows += [f"{i},{i},{4096 + 512 * i},{700 + (i % 3)},2" for i in range(50)]
    csv_path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    args = ["--out", str(out), "--from-csv", str(csv_path), "--buffer-size", "4096"]
    assert bench.main(args) == 0
    assert (out / "memory.png").stat().st_size > 0
    # Buffer larger than the frames at the end of warm-up: not a fair run, so FAIL.
    args = ["--out", str(out), "--from-csv", str(csv_path), "--buffer-size", "100000"]
    assert bench.main(args) == 1
