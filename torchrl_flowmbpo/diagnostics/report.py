"""A run's model-exploitation diagnostics next to its real returns, in one PNG
(``examples/diagnostics_report.py``).

Reads the TorchRL CSV logs of the run (``<run dir>/logs/<exp>/scalars/<namespace>/<name>.csv``,
rows ``step,value``) and draws one panel per diagnostic group (``docs/metrics.md``,
"Diagnostics") plus ``train/return`` and ``eval/return``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["PANELS", "find_experiments", "make_report", "read_scalars"]

#: Behaviours of the probe (``reference_behaviours``): all tasks' three, then the controllers.
PROBE_BEHAVIOURS = ("zero", "random", "policy", "pd", "trot")

#: (title, metric names, reference line or None, log scale when every value is positive).
PANELS: tuple[tuple[str, tuple[str, ...], float | None, bool], ...] = (
    ("real return (raw env reward)", ("train/return", "eval/return"), None, False),
    (
        "open-loop reward correlation",
        (
            "diagnostics/reward_corr_first",
            "diagnostics/reward_corr_mean",
            "diagnostics/reward_corr_last",
            "diagnostics/reward_corr_teacher",
        ),
        1.0,
        False,
    ),
    (
        "open-loop reward error (normalised units)",
        (
            "diagnostics/reward_mae_mean",
            "diagnostics/reward_mae_last",
            "diagnostics/reward_bias_mean",
        ),
        0.0,
        False,
    ),
    (
        "open-loop latent error mean_d (z_t − E(o_t))²",
        ("diagnostics/latent_error_mean", "diagnostics/latent_error_last"),
        None,
        True,
    ),
    ("termination: predicted / observed", ("diagnostics/termination_ratio",), 1.0, True),
    (
        "termination probability per step",
        ("diagnostics/termination_predicted_rate", "diagnostics/termination_observed_rate"),
        None,
        True,
    ),
    ("termination Brier score", ("diagnostics/termination_brier",), None, False),
    (
        "critic vs real return-to-go (normalised)",
        (
            "diagnostics/critic_bias",
            "diagnostics/critic_value_mean",
            "diagnostics/critic_return_mean",
        ),
        0.0,
        False,
    ),
    ("critic correlation with real return", ("diagnostics/critic_corr",), 1.0, False),
    (
        "exploitation gap: J_imag − r̄ / (scale (1 − γ))",
        ("diagnostics/exploitation_gap",),
        0.0,
        False,
    ),
    (
        "H-step return from the same start states",
        (
            "diagnostics/horizon_imagined_return",
            "diagnostics/horizon_real_return",
            "diagnostics/horizon_gap",
        ),
        0.0,
        False,
    ),
    (
        "actor gradient: model's rewards vs critic's bootstrap",
        ("diagnostics/actor_reward_grad_norm", "diagnostics/actor_bootstrap_grad_norm"),
        None,
        True,
    ),
    (
        "actor gradient: cos(g_R, g_V), critic's share |g_V|² / Σ",
        ("diagnostics/actor_grad_cosine", "diagnostics/actor_bootstrap_share"),
        0.0,
        False,
    ),
    (
        "actor gradient: |g_V| / |g_R|",
        ("diagnostics/actor_grad_norm_ratio",),
        1.0,
        True,
    ),
    (
        "imagined return parts (normalised)",
        ("diagnostics/actor_reward_part_mean", "diagnostics/actor_bootstrap_part_mean"),
        0.0,
        False,
    ),
    *(
        (
            f"behaviour probe: {kind} sums (raw reward)",
            tuple(f"diagnostics/probe_{b}_{kind}" for b in PROBE_BEHAVIOURS),
            None,
            False,
        )
        for kind in ("real", "model")
    ),
    ("behaviour probe: rank agreement", ("diagnostics/probe_rank_agreement",), 1.0, False),
)


def read_scalars(scalars_dir: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Every ``<name>.csv`` under ``scalars_dir`` as ``{name: (steps, values)}``, sorted by step."""
    series = {}
    for path in sorted(scalars_dir.rglob("*.csv")):
        name = path.relative_to(scalars_dir).with_suffix("").as_posix()
        with path.open(newline="") as file:
            rows = sorted((float(r[0]), float(r[1])) for r in csv.reader(file) if len(r) == 2)
        if rows:
            steps, values = zip(*rows, strict=True)
            series[name] = (list(steps), list(values))
    return series


def find_experiments(run_dir: Path) -> dict[str, Path]:
    """``{experiment name: scalars dir}`` for every experiment logged under ``run_dir/logs``."""
    return {p.parent.name: p for p in sorted((run_dir / "logs").glob("*/scalars")) if p.is_dir()}


def make_report(run_dir: Path, output: Path | None = None) -> tuple[Path, list[str]]:
    """Draws the panels and returns ``(png path, metrics not found in any experiment)``.

    Raises:
        FileNotFoundError: if the run has no CSV logs or none of the panel metrics.
    """
    experiments = {name: read_scalars(path) for name, path in find_experiments(run_dir).items()}
    if not experiments:
        raise FileNotFoundError(f"No CSV logs under {run_dir / 'logs'}/<exp>/scalars.")
    logged = set().union(*(series.keys() for series in experiments.values()))
    missing = [name for _, names, _, _ in PANELS for name in names if name not in logged]
    panels = [p for p in PANELS if any(name in logged for name in p[1])]
    if not panels:
        raise FileNotFoundError(f"None of the diagnostic or return metrics is logged in {run_dir}.")
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    # A Figure without pyplot: no global backend or figure registry is touched.
    fig = Figure(figsize=(5.5 * ncols, 3.6 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (title, names, reference, log_scale) in zip(axes.flat, panels, strict=False):
        values_drawn: list[float] = []
        for exp, series in experiments.items():
            for name in names:
                if name not in series:
                    continue
                steps, values = series[name]
                label = name if len(experiments) == 1 else f"{name} ({exp})"
                ax.plot(steps, values, ".-" if len(steps) < 50 else "-", label=label)
                values_drawn += [v for v in values if math.isfinite(v)]
        if reference is not None:
            ax.axhline(reference, color="grey", lw=0.8, ls="--")
        if log_scale and values_drawn and min(values_drawn) > 0:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"diagnostics: {run_dir.name}")
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.97))
    output = output or run_dir / "diagnostics.png"
    fig.savefig(output, dpi=90)
    return output, missing
