"""Model-exploitation diagnostics: is the policy learning from the model, or fooling it?

Pure functions on real data (no training; plain Python floats and lists out; only
:func:`actor_gradient_split` builds a graph, and writes no ``.grad``):

- :func:`imagination_vs_real`: open-loop reward correlation / error and latent drift vs horizon;
- :func:`termination_calibration`: predicted vs observed termination rate, Brier, reliability;
- :func:`critic_vs_returns`: the critic's V(E(o_t)) vs the discounted real return-to-go;
- :func:`exploitation_gap`: imagined return vs the value of the real per-step reward;
- :func:`horizon_return_gap`: imagined vs real H-step return from the same start states;
- :func:`collect_rollouts`: closed-loop real-env rollouts for the last two;
- :func:`action_gradient_accuracy`: the model's d(return)/d(actions) vs the real one (finite
  differences in a simulator restarted by :func:`make_real_return`, or exact through a
  differentiable one, :func:`make_exact_real_gradient`);
- :func:`actor_gradient_split`: the actor's gradient of the imagined return split into the
  model's reward part and the critic's bootstrap part (norms, cosine, share);
- :func:`behaviour_probe`: real vs the model's open-loop returns of reference behaviours (zero,
  random, the policy, scripted controllers: :func:`reference_behaviours`) from the same starts,
  and whether the model ranks them as the simulator does (:func:`rank_agreement`);
  :func:`reference_probe` composes the two with seeded random actions;
- :func:`scalar_metrics`: a result's scalars as ``{"diagnostics/...": float}`` for a logger.

Formulas and logged names: ``docs/metrics.md``, section "Diagnostics".
"""

from torchrl_flowmbpo.diagnostics.actor_gradients import actor_gradient_split
from torchrl_flowmbpo.diagnostics.behaviours import (
    Behaviour,
    behaviour_probe,
    model_replay_rewards,
    rank_agreement,
    real_rollout,
    reference_behaviours,
    reference_probe,
)
from torchrl_flowmbpo.diagnostics.common import METRIC_PREFIXES, pearson, scalar_metrics
from torchrl_flowmbpo.diagnostics.gradients import (
    action_gradient_accuracy,
    finite_difference_gradient,
    make_exact_real_gradient,
    make_real_return,
    model_action_gradient,
    smoothed_gradient,
)
from torchrl_flowmbpo.diagnostics.returns import (
    collect_rollouts,
    critic_vs_returns,
    exploitation_gap,
    horizon_return_gap,
)
from torchrl_flowmbpo.diagnostics.world_model import (
    CALIBRATION_STRATEGIES,
    imagination_vs_real,
    termination_calibration,
)

__all__ = [
    "CALIBRATION_STRATEGIES",
    "METRIC_PREFIXES",
    "Behaviour",
    "action_gradient_accuracy",
    "actor_gradient_split",
    "behaviour_probe",
    "collect_rollouts",
    "critic_vs_returns",
    "exploitation_gap",
    "finite_difference_gradient",
    "horizon_return_gap",
    "imagination_vs_real",
    "make_exact_real_gradient",
    "make_real_return",
    "model_action_gradient",
    "model_replay_rewards",
    "pearson",
    "rank_agreement",
    "real_rollout",
    "reference_behaviours",
    "reference_probe",
    "scalar_metrics",
    "smoothed_gradient",
    "termination_calibration",
]
