"""The default configuration learns: a bounded training run of ``examples/pwm_flow.py``.

``slow`` (excluded from CI; run with ``pytest -m slow tests/examples/test_learning.py``): six
cartpole swing-up episodes per env (46,080 frames, 32 envs: the embedded default), about 5
minutes on a free 2-core CPU. References on this task, per 240-step episode:
zero action −2,300, uniform random actions −2,026 (docs/learning_notes.md).
"""

from __future__ import annotations

import pytest

#: Uniform random actions on the swing-up task (measured; docs/learning_notes.md).
RANDOM_RETURN = -2026.0
#: The run must beat random by this much (mean of its last two training-episode returns) ...
MARGIN_OVER_RANDOM = 100.0
#: ... improve on its first logged training episodes by this much ...
MARGIN_OVER_FIRST = 800.0
#: ... and never let imagination promise more than this raw reward per step beyond what the
#: policy earns (diagnostics/exploitation_gap_per_step, last three diagnostics; the collapsed
#: runs of docs/learning_notes.md showed +3 to +5 normalised units).
MAX_GAP_PER_STEP = 3.0

LEARNING = "collector.total_frames=46080 eval.interval=0 threads=2 seed=0 hydra.run.dir=DIR"


@pytest.mark.slow
@pytest.mark.xfail(
    reason=(
        "not reliably met yet: with the flow world model (the default) three of six measured "
        "runs met these margins at 46k frames; this test's own run (seed 0, threads=2) ended "
        "at random level (docs/learning_notes.md, runs M1-M3, T0, N3, N4)"
    ),
    raises=AssertionError,  # only a missed margin; a crashed run still fails (pytest.fail)
    strict=False,
)
def test_default_configuration_learns_the_swing_up(scripts, read_scalars):
    # The embedded default except the budget: the smoke runs' shortcuts are left out.
    run = scripts.start_training(LEARNING, tiny=False).result(timeout=1800)
    if run.returncode != 0:
        pytest.fail(f"training exited with {run.returncode}:\n{run.stderr[-4000:]}")
    (log_dir,) = (run.run_dir / "logs").iterdir()
    scalars = log_dir / "scalars"
    _, returns = read_scalars(scalars / "train/return.csv")
    assert len(returns) == 6, returns  # one batch of 32 episodes every 7,680 frames
    final = sum(returns[-2:]) / 2
    assert final >= RANDOM_RETURN + MARGIN_OVER_RANDOM, returns
    assert final >= returns[0] + MARGIN_OVER_FIRST, returns
    _, gaps = read_scalars(scalars / "diagnostics/exploitation_gap_per_step.csv")
    assert max(gaps[-3:]) <= MAX_GAP_PER_STEP, gaps
