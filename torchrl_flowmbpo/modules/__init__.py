"""TensorDict-level modules: actors, the critic and the world-model operators.

The plain ``nn.Module`` maths they wrap lives in :mod:`torchrl_flowmbpo.modules.models`.
"""

from torchrl_flowmbpo.modules.actors import (
    FlowActionDistribution,
    FlowActor,
    GaussianActor,
    TanhNormalActionDistribution,
    empirical_action_std,
)
from torchrl_flowmbpo.modules.critic import VCritic
from torchrl_flowmbpo.modules.world_model_operators import (
    encoder_operator,
    reward_operator,
    transition_operator,
    world_model_wrapper,
)

__all__ = [
    "FlowActionDistribution",
    "FlowActor",
    "GaussianActor",
    "TanhNormalActionDistribution",
    "VCritic",
    "empirical_action_std",
    "encoder_operator",
    "reward_operator",
    "transition_operator",
    "world_model_wrapper",
]
