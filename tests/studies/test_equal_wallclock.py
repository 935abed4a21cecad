"""studies/equal_wallclock.py on synthetic runs with hand-computed readings."""

from __future__ import annotations

from pathlib import Path

import pytest

STUDIES = Path(__file__).resolve().parents[2] / "studies"


@pytest.fixture(scope="module")
def study(load_script):
    load_script(STUDIES / "learning_report.py", "learning_report")
    return load_script(STUDIES / "equal_wallclock.py", "equal_wallclock")


def test_frame_rate_is_the_second_half_slope(study):
    import numpy as np

    # 10 s of start-up, then 100 frames/s.
    steps = np.array([0.0, 100.0, 200.0, 300.0, 400.0])
    seconds = np.array([10.0, 11.0, 12.0, 13.0, 14.0])
    assert study.frame_rate(steps, seconds) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="two timed points"):
        study.frame_rate(steps[:1], seconds[:1])


def test_each_variant_is_read_at_the_reference_budget(study, tmp_path, write_metric):
    learning, throughput = tmp_path / "learning", tmp_path / "throughput"
    # Throughput: "slow" 10 frames/s, "fast" 40 frames/s (second halves).
    write_metric(throughput, "t", "slow", 0, "time/elapsed_s", [(0, 5), (100, 15), (200, 25)])
    write_metric(throughput, "t", "fast", 0, "time/elapsed_s", [(0, 1), (400, 11), (800, 21)])
    # Learning: slow runs 1,000 frames -> a 100 s budget; fast reads at 4,000 frames.
    for seed, offset in enumerate((0.0, 10.0, 20.0)):
        write_metric(learning, "t", "slow", seed, "eval/return", [(0, offset), (1000, offset + 1)])
        rows = [(0, offset), (2000, offset + 2), (6000, offset + 6)]
        write_metric(learning, "t", "fast", seed, "eval/return", rows)
    budget, rows = study.compare([learning], [throughput], "t", reference="slow", reps=200)
    assert budget == pytest.approx(100.0)
    fast, slow = rows
    assert (fast.variant, fast.frames, fast.capped) == ("fast", pytest.approx(4000.0), False)
    assert fast.per_seed == pytest.approx((4.0, 14.0, 24.0))  # interpolated at 4,000 frames
    assert fast.iqm == pytest.approx(14.0)  # three seeds: the mean
    assert slow.per_seed == pytest.approx((1.0, 11.0, 21.0))
    # A budget beyond a variant's runs reads its last frame, marked as such.
    budget, rows = study.compare([learning], [throughput], "t", seconds=1000.0, reps=200)
    assert rows[0].capped and rows[0].frames == pytest.approx(6000.0)
    assert "6,000 (its last)" in study.format_table("t", budget, rows)


def test_bad_requests_fail_clearly(study, tmp_path, write_metric):
    write_metric(tmp_path, "t", "a", 0, "time/elapsed_s", [(0, 0), (10, 1), (20, 2)])
    write_metric(tmp_path, "t", "a", 0, "eval/return", [(0, 0.0), (20, 1.0)])
    with pytest.raises(ValueError, match="one of --reference"):
        study.compare([tmp_path], [tmp_path], "t")
    with pytest.raises(ValueError, match="reference 'b' has no runs; have: \\['a'\\]"):
        study.compare([tmp_path], [tmp_path], "t", reference="b")
    with pytest.raises(ValueError, match="no variant of task 'u'"):
        study.compare([tmp_path], [tmp_path], "u", seconds=1.0)
