"""Plain ``nn.Module`` maths: layers, ensembles, world models and policy/critic networks."""

from torchrl_flowmbpo.modules.models.ensemble import Ensemble
from torchrl_flowmbpo.modules.models.flow_world_model import FlowWorldModel, time_features
from torchrl_flowmbpo.modules.models.input_norm import InputNormalizer
from torchrl_flowmbpo.modules.models.layers import (
    NormedLinear,
    SimNorm,
    act_norm_mlp,
    mlp,
    simnorm_project,
    trunc_normal_init_,
)
from torchrl_flowmbpo.modules.models.policy_nets import (
    CriticEnsembleNet,
    FlowPolicyNet,
    GaussianPolicyNet,
)
from torchrl_flowmbpo.modules.models.world_model import (
    PRESETS,
    REWARD_HEADS,
    LatentWorldModel,
    PWMWorldModel,
)

__all__ = [
    "PRESETS",
    "REWARD_HEADS",
    "CriticEnsembleNet",
    "Ensemble",
    "FlowPolicyNet",
    "FlowWorldModel",
    "GaussianPolicyNet",
    "InputNormalizer",
    "LatentWorldModel",
    "NormedLinear",
    "PWMWorldModel",
    "SimNorm",
    "act_norm_mlp",
    "mlp",
    "simnorm_project",
    "time_features",
    "trunc_normal_init_",
]
