"""The PWM objective as TorchRL ``LossModule``s: world model, actor and value losses."""

from torchrl_flowmbpo.objectives.common import NonFiniteBatchError, check_finite
from torchrl_flowmbpo.objectives.pwm_actor_loss import PWMActorLoss
from torchrl_flowmbpo.objectives.pwm_value_loss import CRITIC_TARGETS, PWMValueLoss
from torchrl_flowmbpo.objectives.world_model_loss import FLOW_SOURCES, WorldModelLoss

__all__ = [
    "CRITIC_TARGETS",
    "FLOW_SOURCES",
    "NonFiniteBatchError",
    "PWMActorLoss",
    "PWMValueLoss",
    "WorldModelLoss",
    "check_finite",
]
