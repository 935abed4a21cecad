"""Loss buffers live on their networks' device, so CUDA networks need no extra ``.to``.

No GPU in CI: the ``meta`` device stands in for CUDA (a CPU-created buffer there is the
"cuda:0 and cpu" mismatch the update-step benchmark hit on an H200).
"""

from __future__ import annotations

import torch

from torchrl_flowmbpo.modules import GaussianActor, VCritic
from torchrl_flowmbpo.modules.models import FlowWorldModel, PWMWorldModel
from torchrl_flowmbpo.objectives import PWMActorLoss, WorldModelLoss
from torchrl_flowmbpo.objectives.common import module_device


def _models(world_model_cls):
    wm = world_model_cls(4, 2, latent_dim=16, units=(32,), encoder_units=(32,)).to("meta")
    actor = GaussianActor(16, 2, hidden=(32,)).to("meta")
    critic = VCritic(16, hidden=(32,)).to("meta")
    return wm, actor, critic


def test_world_model_loss_pos_weight_on_model_device():
    for cls in (PWMWorldModel, FlowWorldModel):
        wm, _, _ = _models(cls)
        loss = WorldModelLoss(wm, horizon=3, term_pos_weight=4.0)
        assert loss.term_pos_weight.device.type == "meta"


def test_actor_loss_return_normaliser_on_actor_device():
    wm, actor, critic = _models(PWMWorldModel)
    rms = PWMActorLoss(actor, critic, wm, horizon=3).ret_rms
    assert {buf.device.type for buf in rms.buffers()} == {"meta"}


def test_module_device_of_parameterless_module_is_cpu():
    assert module_device(torch.nn.Identity()).type == "cpu"
    assert module_device(torch.nn.Linear(2, 2).to("meta")).type == "meta"
