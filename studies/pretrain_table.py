"""Print the held-out metrics of pretraining runs as one markdown table (docs/results.md).

    python studies/pretrain_table.py docs/data/pretrain/anymal_mlp docs/data/pretrain/anymal_flow

Each argument is a folder holding the ``metrics.csv`` of ``examples/pretrain_world_model.py``
(a run directory, or its copy under ``docs/data/pretrain``); the folder name labels its rows.
Metric definitions: ``docs/metrics.md`` ("Pretraining").
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

#: (column of metrics.csv, table header, number format)
COLUMNS = (
    ("step", "steps", "{:.0f}"),
    ("elapsed_s", "wall-clock (min)", "{:.1f}"),
    ("train_loss", "train loss", "{:.3f}"),
    ("reward_corr_first", "reward corr (step 1)", "{:.3f}"),
    ("reward_corr_mean", "reward corr (mean of H)", "{:.3f}"),
    ("latent_error_h1", "latent err h1", "{:.4f}"),
    ("latent_error_h16", "latent err h16", "{:.4f}"),
    ("return_corr", "H-step return corr", "{:.3f}"),
    ("term_ratio", "term. pred/obs", "{:.2f}"),
    ("term_brier", "term. Brier", "{:.4f}"),
    ("grad_grad_cos_mean", "grad cos", "{:.3f}"),
    ("grad_first_action_sign_agreement", "first-action sign", "{:.2f}"),
)


def cell(value: str, fmt: str, column: str) -> str:
    if value in ("", None):
        return "–"
    number = float(value)
    if column == "elapsed_s":
        number /= 60
    return "–" if math.isnan(number) else fmt.format(number)


def table(folders: list[Path]) -> str:
    lines = [
        "| model | " + " | ".join(header for _, header, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for folder in folders:
        with (folder / "metrics.csv").open(newline="") as file:
            for row in csv.DictReader(file):
                cells = [cell(row.get(col, ""), fmt, col) for col, _, fmt in COLUMNS]
                lines.append(f"| {folder.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders holding a metrics.csv")
    print(table(parser.parse_args().folders))


if __name__ == "__main__":
    main()
