"""The PWM objective as TorchRL ``LossModule``s: world model, actor and value losses, and SHAC's
actor loss through a differentiable simulator."""

from torchrl_flowmbpo.objectives.common import NonFiniteBatchError, check_finite
from torchrl_flowmbpo.objectives.pathwise_actor_loss import PathwiseActorLoss
from torchrl_flowmbpo.objectives.pwm_actor_loss import PWMActorLoss
from torchrl_flowmbpo.objectives.pwm_value_loss import CRITIC_TARGETS, PWMValueLoss
from torchrl_flowmbpo.objectives.shac_actor_loss import SHACActorLoss, segment_returns
from torchrl_flowmbpo.objectives.termination_balance import TerminationBalance
from torchrl_flowmbpo.objectives.world_model_loss import FLOW_SOURCES, WorldModelLoss

__all__ = [
    "CRITIC_TARGETS",
    "FLOW_SOURCES",
    "NonFiniteBatchError",
    "PWMActorLoss",
    "PWMValueLoss",
    "PathwiseActorLoss",
    "SHACActorLoss",
    "TerminationBalance",
    "WorldModelLoss",
    "check_finite",
    "segment_returns",
]
