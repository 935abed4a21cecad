"""Everything of the training step but the simulator, on a CUDA device (skipped without one).

CI has no GPU, so this runs where one is lent (``python -m pytest tests/test_cuda_pipeline.py``).
It builds what ``examples/pwm_flow.py`` builds for ``device=cuda`` — CUDA replay storage with
slice sampling, the reward-normalisation transform, the three losses, ``PWMUpdater`` — feeds it
collector-shaped CUDA batches, and runs every diagnostic on them. A buffer or tensor created on
the CPU anywhere on that path fails here (the losses once did: see tests/objectives/
test_loss_devices.py).
"""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer

from torchrl_flowmbpo.diagnostics import (
    actor_gradient_split,
    critic_vs_returns,
    horizon_return_gap,
    imagination_vs_real,
    termination_calibration,
)
from torchrl_flowmbpo.modules.builders import build_actor, build_critic, build_world_model
from torchrl_flowmbpo.objectives import PWMActorLoss, PWMValueLoss, WorldModelLoss
from torchrl_flowmbpo.trainers import PWMUpdater
from torchrl_flowmbpo.transforms import RewardNormalization

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DEVICE = "cuda"
OBS, ACT, ENVS, STEPS, H = 5, 2, 4, 48, 8
NORM_KEY = ("next", "reward_norm")


def collector_batch(generator: torch.Generator) -> TensorDict:
    """``[ENVS, STEPS]`` steps shaped like a collector's output, one episode per env."""
    shape = (ENVS, STEPS)
    flags = torch.zeros(*shape, 1, dtype=torch.bool)
    terminated = flags.clone()
    terminated[0, -1] = True
    truncated = flags.clone()
    truncated[1:, -1] = True
    obs = torch.randn(*shape, OBS, generator=generator)
    data = TensorDict(
        {
            "observation": obs,
            "action": torch.rand(*shape, ACT, generator=generator) * 2 - 1,
            ("collector", "traj_ids"): torch.arange(ENVS).unsqueeze(-1).expand(shape),
            "next": {
                "observation": torch.randn(*shape, OBS, generator=generator),
                "reward": torch.randn(*shape, 1, generator=generator),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        batch_size=shape,
    )
    return data.to(DEVICE)


@pytest.mark.parametrize(
    ("wm_spec", "actor_spec"),
    [
        ({"type": "mlp"}, {"type": "gaussian"}),
        ({"type": "flow", "integrator": "heun", "flow_steps": 2}, {"type": "flow"}),
        ({"type": "flow", "flow_steps": 4, "grad_checkpoint": True}, {"type": "gaussian"}),
    ],
    ids=["mlp-gaussian", "flow-flowactor", "flow-ckpt"],
)
def test_training_step_and_diagnostics_on_cuda(wm_spec, actor_spec):
    torch.manual_seed(0)
    sizes = {"latent_dim": 32, "units": (64, 64), "encoder_units": (64,)}
    wm = build_world_model({**wm_spec, **sizes}, OBS, ACT).to(DEVICE)
    actor = build_actor({**actor_spec, "hidden": (32, 32)}, wm.latent_dim, ACT).to(DEVICE)
    critic = build_critic({"hidden": (32, 32)}, wm.latent_dim).to(DEVICE)
    wm_loss = WorldModelLoss(wm, horizon=H, term_pos_weight=3.0)
    wm_loss.set_keys(reward=NORM_KEY)
    # The MLP case as the pipeline builds it by default (no target critic, a plain critic call);
    # the flow cases with a target critic (parameters swapped in).
    target = wm_spec["type"] == "flow"
    value_loss = PWMValueLoss(critic, target_critic=target, functional=target)
    entropy = 0.1 if actor_spec["type"] == "gaussian" else 0.0
    actor_loss = PWMActorLoss(
        actor,
        critic,
        wm,
        horizon=H,
        entropy_coef=entropy,
        bootstrap_params=value_loss.target_critic_network_params,
    )
    optimizers = {
        "world_model": torch.optim.Adam(wm.parameters(), lr=1e-3),
        "actor": torch.optim.Adam(actor.parameters(), lr=1e-3),
        "critic": torch.optim.Adam(critic.parameters(), lr=1e-3),
    }
    updater = PWMUpdater(
        wm_loss,
        actor_loss,
        value_loss,
        optimizers,
        {"world_model": 20.0, "actor": 1.0, "critic": 100.0},
        critic_iterations=2,
        critic_minibatches=2,
    )
    norm = RewardNormalization("scale", in_keys=[("next", "reward")], out_keys=[NORM_KEY]).to(
        DEVICE
    )
    buffer = TensorDictReplayBuffer(
        storage=LazyTensorStorage(1000, ndim=2, device=DEVICE),
        sampler=SliceSampler(slice_len=H, traj_key=("collector", "traj_ids"), strict_length=True),
        batch_size=8 * H,
        transform=norm,
    )
    data = collector_batch(torch.Generator().manual_seed(1))
    buffer.extend(data)
    norm.update(data.get(("next", "reward")))

    before = {name: p.detach().clone() for name, p in wm.named_parameters()}
    slices = buffer.sample().reshape(-1, H)
    assert slices.device.type == "cuda" and slices.get(NORM_KEY).is_cuda
    wm_metrics = updater.world_model_step(slices)
    start = slices[:, 0].select("observation")
    ac_metrics = updater.actor_critic_step(start)
    assert all(math.isfinite(v) for v in {**wm_metrics, **ac_metrics}.values())
    assert sum(updater.skipped_steps.values()) == 0
    moved = [n for n, p in wm.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert moved, "the world-model step changed no parameter"

    scale = float(norm.scale)
    results = {
        "imagination": imagination_vs_real(wm, data[:, :H], horizon=H, reward_scale=scale),
        "termination": termination_calibration(wm, data.reshape(-1)),
        "horizon": horizon_return_gap(wm, actor, data, horizon=H, gamma=0.99, reward_scale=scale),
        "critic": critic_vs_returns(
            critic, wm, data, gamma=0.9, reward_scale=scale, tail_tolerance=0.5
        ),
        "actor_split": actor_gradient_split(actor_loss, start),
    }
    for name, result in results.items():
        scalars = [v for v in result.values() if isinstance(v, float)]
        assert scalars, name
        assert not any(isinstance(v, torch.Tensor) for v in result.values()), name
    assert results["critic"]["count"] > 0
    assert math.isfinite(results["actor_split"]["reward_grad_norm"])
