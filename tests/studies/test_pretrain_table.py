"""studies/pretrain_table.py on a hand-written metrics.csv."""

from __future__ import annotations

from pathlib import Path

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def test_rows_per_evaluation_in_minutes_with_dashes_for_undefined(load_script, tmp_path):
    script = load_script(STUDIES / "pretrain_table.py", "pretrain_table")
    run = tmp_path / "anymal_flow"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "step,elapsed_s,train_loss,reward_corr_first,return_corr,grad_grad_cos_mean\n"
        "0,30,,,0.1,\n"
        "1000,150,0.25,0.91234,0.8,0.3333\n"
    )
    lines = script.table([run]).splitlines()
    assert len(lines) == 4 and lines[1].count("|---") == len(script.COLUMNS) + 1
    first = [c.strip() for c in lines[2].split("|")[1:-1]]
    second = [c.strip() for c in lines[3].split("|")[1:-1]]
    headers = ["model"] + [header for _, header, _ in script.COLUMNS]
    row = dict(zip(headers, second, strict=True))
    assert row["model"] == "anymal_flow" and row["steps"] == "1000"
    assert row["wall-clock (min)"] == "2.5" and row["reward corr (step 1)"] == "0.912"
    assert row["grad cos"] == "0.333" and row["term. Brier"] == "–"  # a column the file lacks
    assert dict(zip(headers, first, strict=True))["train loss"] == "–"
