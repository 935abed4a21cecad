"""The plain-PyTorch loop of benchmarks/plain_pwm.py computes the same losses as ours."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from torchrl_flowmbpo.modules import VCritic
from torchrl_flowmbpo.modules.models import FlowWorldModel, PWMWorldModel
from torchrl_flowmbpo.objectives import PWMValueLoss, WorldModelLoss

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script(BENCHMARKS / "update_step.py", "update_step_bench")


@pytest.fixture(scope="module")
def plain(load_script):
    return load_script(BENCHMARKS / "plain_pwm.py", "plain_pwm_bench")


def _batch(bench, horizon: int):
    size = {"wm_batch": 16, "horizon": horizon}
    batch = bench.make_wm_batch(size, "cpu", torch.Generator().manual_seed(0))
    assert batch.batch_size == torch.Size([16, horizon])  # H rows, as the pipeline samples
    return batch


@pytest.mark.parametrize(
    ("model_cls", "kwargs"),
    [(PWMWorldModel, {}), (FlowWorldModel, {}), (FlowWorldModel, {"grad_checkpoint": True})],
    ids=["mlp", "flow", "flow-ckpt"],
)
def test_plain_world_model_loss_matches_world_model_loss(bench, plain, model_cls, kwargs):
    horizon = 5
    torch.manual_seed(0)
    wm = model_cls(
        bench.OBS_DIM,
        bench.ACTION_DIM,
        latent_dim=32,
        units=(64, 64),
        encoder_units=(64,),
        reward_head="scalar",
        termination_head=True,
        **kwargs,
    )
    batch = _batch(bench, horizon)
    # make the termination term non-trivial (the last row, t = H - 1, included)
    batch["next", "terminated"][:, ::2] = True
    loss = WorldModelLoss(wm, horizon=horizon, wm_rho=plain.WM_RHO, flow_source="rollout")
    torch.manual_seed(1)  # same flow times for the flow model (same draw order)
    ours = loss(batch)
    ours_total = ours["loss_dynamics"] + ours["loss_reward"] + ours["loss_termination"]
    torch.manual_seed(1)
    plain_total = plain.plain_world_model_loss(wm, *plain.plain_wm_tensors(batch), horizon=horizon)
    torch.testing.assert_close(plain_total, ours_total, rtol=1e-5, atol=1e-5)
    # and the gradients agree
    grads_ours = torch.autograd.grad(ours_total, list(wm.parameters()), allow_unused=True)
    grads_plain = torch.autograd.grad(plain_total, list(wm.parameters()), allow_unused=True)
    for g_ours, g_plain in zip(grads_ours, grads_plain, strict=True):
        if g_ours is None:
            assert g_plain is None
        else:
            torch.testing.assert_close(g_plain, g_ours, rtol=1e-4, atol=1e-6)


def test_plain_td_lambda_matches_value_loss(plain):
    torch.manual_seed(0)
    critic = VCritic(16, hidden=(32,))
    h, b = 6, 4
    traj = TensorDict(
        {
            "latent": torch.rand(b, h, 16),
            "survival": torch.ones(b, h, 1),
            ("next", "latent"): torch.rand(b, h, 16),
            ("next", "reward"): torch.randn(b, h, 1),
            ("next", "continue"): torch.rand(b, h, 1),
        },
        batch_size=[b, h],
    )
    ours = PWMValueLoss(critic, gamma=0.99, lmbda=0.95).compute_value_targets(traj.clone())
    with torch.no_grad():
        next_value = critic.net(traj["next", "latent"])[1]
    targets = plain.plain_td_lambda(
        traj["next", "reward"].transpose(0, 1),
        traj["next", "continue"].transpose(0, 1),
        next_value.transpose(0, 1),
        0.99,
        0.95,
    ).transpose(0, 1)
    torch.testing.assert_close(targets, ours["value_target"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [2, 4])
def test_ckpt_configs_build_a_checkpointed_flow_model(bench, k):
    wm, _, _ = bench.build_models(f"flow-heun-K{k}-ckpt", bench.SIZES["small"], "cpu")
    assert (wm.integrator, wm.flow_steps, wm.grad_checkpoint) == ("heun", k, True)


def test_cpu_clock_counts_work_not_waiting(bench):
    # A sleeping process does no work: elapsed time counts the sleep, CPU time does not.
    wall, _ = bench.measure(lambda: time.sleep(0.2), "cpu", first=False)
    cpu, _ = bench.measure(lambda: time.sleep(0.2), "cpu", first=False, clock=bench.CLOCKS["cpu"])
    assert wall >= 0.2
    assert cpu < 0.05


def test_cpu_clock_needs_the_cpu_device(bench, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["update_step.py", "--clock", "cpu", "--device", "cuda"])
    with pytest.raises(SystemExit):
        bench.main()
    error = capsys.readouterr().err
    assert "--clock cpu measures CPU work; it needs --device cpu, got cuda" in error
