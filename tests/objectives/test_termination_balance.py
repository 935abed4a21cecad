"""TerminationBalance: the weighted termination BCE on slice-sampled batches recovers the
termination rate of the collected data, which the unweighted one underestimates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer

from torchrl_flowmbpo.objectives import TerminationBalance

H = 16
HAZARD = 0.02  # falls per step, independent of the state
ENVS, STEPS = 32, 1000


def geometric_episodes(generator: torch.Generator) -> TensorDict:
    """``[ENVS, STEPS]`` collector-style data whose episodes end in a fall with probability
    ``HAZARD`` per step (geometric lengths, no time limit)."""
    terminated = torch.rand(ENVS, STEPS, generator=generator) < HAZARD
    # A new trajectory id after every fall; ids unique across envs.
    ends_before = torch.cat([torch.zeros(ENVS, 1, dtype=torch.long), terminated[:, :-1].long()], 1)
    traj = ends_before.cumsum(1) + torch.arange(ENVS).unsqueeze(1) * STEPS
    return TensorDict(
        {("collector", "traj_ids"): traj, ("next", "terminated"): terminated.unsqueeze(-1)},
        batch_size=[ENVS, STEPS],
    )


def fitted_rate(batches: list[torch.Tensor], pos_weight: float) -> float:
    """sigmoid of the constant logit that minimises the weighted BCE over ``batches``."""
    logit = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([logit], max_iter=100)
    targets = torch.cat(batches).float()

    def closure():
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(
            logit.expand_as(targets), targets, pos_weight=torch.tensor([pos_weight])
        )
        loss.backward()
        return loss

    optimizer.step(closure)
    return torch.sigmoid(logit).item()


@pytest.fixture(scope="module")
def sampled():
    generator = torch.Generator().manual_seed(0)
    data = geometric_episodes(generator)
    buffer = TensorDictReplayBuffer(
        storage=LazyTensorStorage(ENVS * STEPS, ndim=2),
        sampler=SliceSampler(slice_len=H, traj_key=("collector", "traj_ids"), strict_length=True),
        batch_size=256 * H,
    )
    buffer.extend(data)
    torch.manual_seed(0)
    batches = [buffer.sample().get(("next", "terminated")).flatten() for _ in range(100)]
    return data.get(("next", "terminated")), batches


def test_slice_sampling_under_represents_terminations(sampled):
    terminated, batches = sampled
    data_rate = terminated.float().mean().item()
    batch_rate = torch.cat(batches).float().mean().item()
    assert data_rate == pytest.approx(HAZARD, rel=0.1)
    # One start of up to H holds a fall; short episodes are over-picked: about 4x fewer here.
    assert 2.5 < data_rate / batch_rate < 6


def test_balanced_weight_recovers_the_data_rate(sampled):
    terminated, batches = sampled
    balance = TerminationBalance()
    balance.observe_data(terminated)
    for batch in batches:
        balance.observe_batch(batch)
    data_rate = terminated.float().mean().item()
    assert fitted_rate(batches, balance.weight()) == pytest.approx(data_rate, rel=0.02)
    assert fitted_rate(batches, 1.0) < data_rate / 2.5


def test_weight_formula_and_bounds():
    balance = TerminationBalance(max_weight=10.0)
    assert balance.weight() == 1.0  # nothing seen yet
    balance.observe_data(torch.tensor([True, False, False, False]))  # odds 1/3
    assert balance.weight() == 1.0  # no termination sampled yet
    balance.observe_batch(torch.tensor([True] + [False] * 9))  # odds 1/9
    assert balance.weight() == pytest.approx(3.0)
    balance.observe_batch(torch.zeros(1000, dtype=torch.bool))  # odds 1/1009
    assert balance.weight() == 10.0
    state = balance.state_dict()
    assert set(state) == {"data_terminal", "data_count", "batch_terminal", "batch_count"}
    restored = TerminationBalance(max_weight=10.0)
    restored.load_state_dict(state)
    assert restored.weight() == balance.weight()


def test_max_weight_below_one_is_rejected():
    with pytest.raises(ValueError, match=r"max_weight must be >= 1, got 0\.5"):
        TerminationBalance(max_weight=0.5)
