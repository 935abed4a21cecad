"""pwm_flow.py logs the world model's gradient against the exact simulator gradient on a task with
a differentiable simulator (diagnostics.exact_gradient=true), and refuses the option elsewhere."""

from __future__ import annotations

import math

#: 4 envs x 16 steps per iteration, 128 random frames, diagnostics every iteration after them.
RUN = (
    "env=cartpole_balance env.num_envs=4 collector.total_frames=256 diagnostics.interval=1 "
    "diagnostics.exact_gradient=true eval.interval=0 eval.episodes=1 eval.num_envs=1 "
    "world_model.preset=small seed=2 hydra.run.dir=DIR"
)


def test_exact_gradient_metrics_are_logged(scripts, read_scalars):
    run = scripts.start_training(RUN).result().check()
    (log_dir,) = (run.run_dir / "logs").iterdir()
    scalars = log_dir / "scalars" / "diagnostics"
    steps, cosines = read_scalars(scalars / "exact_gradient_grad_cos_mean.csv")
    assert steps == [192.0, 256.0]  # the iterations after the 128 random frames
    assert all(-1.0 <= c <= 1.0 for c in cosines)
    _, ratios = read_scalars(scalars / "exact_gradient_grad_norm_ratio.csv")
    assert all(r > 0 and math.isfinite(r) for r in ratios)
    _, counts = read_scalars(scalars / "exact_gradient_count.csv")
    assert counts == [4.0, 4.0]


def test_exact_gradient_needs_a_differentiable_task(scripts):
    run = scripts.start_training(
        "env=ant env.num_envs=2 diagnostics.exact_gradient=true hydra.run.dir=DIR"
    ).result()
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert (
        "Invalid configuration: diagnostics.exact_gradient=True is not allowed; allowed: false "
        "on a task without a differentiable simulator." in run.stderr
    )
