"""studies/branch_slopes.py: the branched data and a tiny end-to-end row."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import branch_slopes as bench  # studies/ is on pytest's pythonpath (pyproject.toml)
import pytest
import torch
from tensordict import TensorDict

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "branch_slopes.py"


@pytest.fixture(scope="module")
def states() -> torch.Tensor:
    return bench.trot_states(3, 4, seed=0)


def test_branches_restart_at_their_state_and_differ_by_action(states):
    data, dropped = bench.branch_data(states, 2, 3, seed=0)
    assert dropped == 0.0 and data.shape == (6, 3)
    assert data.get("group")[:, 0].tolist() == [0, 0, 1, 1, 2, 2]
    first = data.get("observation")[:, 0]
    # Rows 2i and 2i + 1 are the branches of state i, restarted there (up to the renormalised
    # quaternion and the heading projection seen from the origin: ~1e-3 after a trot's metres).
    torch.testing.assert_close(first, states.repeat_interleave(2, 0), atol=5e-3, rtol=0)
    actions = data.get("action")
    assert float(actions.abs().max()) <= bench.ACTION_RANGE
    assert not torch.equal(actions[0], actions[1])
    # Same state, other actions: the branches part after the first step.
    after = data.get(("next", "observation"))[:, 0]
    assert float((after[0] - after[1]).abs().max()) > 1e-3
    # Each step's next observation is the following step's observation.
    torch.testing.assert_close(
        data.get(("next", "observation"))[:, :-1], data.get("observation")[:, 1:]
    )


class Toy:
    """encode = identity, next(z, a) = z + a, reward(z, a) = z (one dim)."""

    encode = staticmethod(lambda obs: obs)
    next = staticmethod(lambda z, a: z + a)
    reward = staticmethod(lambda z, a: z)


def toy_data(real_reward: torch.Tensor) -> TensorDict:
    # Rows 0, 1 branch from state 0 (actions 1 then 2 at t = 0); row 2 is alone in group 1.
    observation = torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1).expand(3, 2, 1)
    action = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]).unsqueeze(-1)
    return TensorDict(
        {
            "observation": observation,
            "action": action,
            ("next", "reward"): real_reward.view(3, 2, 1),
            "group": torch.tensor([0, 0, 1]).unsqueeze(-1).expand(3, 2),
        },
        batch_size=[3, 2],
    )


def test_branch_difference_loss_by_hand():
    # Model rewards of rows 0 and 1: (z_0, z_0 + a_0) = (0, 1) and (0, 2); real rewards 0: the
    # difference is (0, ∓1), squared mean 0.5 whichever order a pair is drawn in. Row 2 has
    # no sibling and is never drawn.
    loss = bench.branch_difference_loss(Toy(), toy_data(torch.zeros(3, 2)), pairs=5, horizon=2)
    assert float(loss()) == pytest.approx(0.5)
    # A real reward that differs from the model's by a per-state offset costs nothing.
    offset = torch.tensor([[3.0, 4.0], [3.0, 5.0], [9.0, 9.0]])
    loss = bench.branch_difference_loss(Toy(), toy_data(offset), pairs=5, horizon=2)
    assert float(loss()) == pytest.approx(0.0)
    lonely = toy_data(torch.zeros(3, 2))[2:]
    with pytest.raises(ValueError, match="two or more kept branches"):
        bench.branch_difference_loss(Toy(), lonely, pairs=1, horizon=2)


def test_bad_branches_are_refused(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--branches", "1", "3", "--slices", "16"])
    assert "--branches [3]: each must be >= 1 and divide --slices 16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--branches", "1", "16", "--diff-weight", "1"])
    assert "> 0 needs every --branches >= 2 (got [1, 16])" in capsys.readouterr().err


def test_tiny_run_writes_finite_rows(tmp_path, capsys):
    out = tmp_path / "rows.csv"
    bench.main(
        ["--branches", "1", "2", "--slices", "4", "--horizon", "2", "--steps", "2",
         "--batch", "4", "--states", "3", "--smooth", "0.3", "--smooth-samples", "2",
         "--csv", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "branches 1: 4 trot states x 1" in printed and "branches 2: 2 trot states x 2" in printed
    rows = list(csv.DictReader(out.open()))
    assert [(r["wm"], r["branches"]) for r in rows] == [("mlp", "1"), ("mlp", "2")]
    for row in rows:
        assert row["smooth"] == "0.3" and row["diff_weight"] == "0.0"
        assert -1.0 <= float(row["grad_cos_mean"]) <= 1.0
        assert math.isfinite(float(row["value_corr"]))
        assert len(row["cos_per_step"].split()) == 2


def test_training_adds_the_weighted_difference_loss_every_step(states, monkeypatch):
    data, _ = bench.branch_data(states, 2, 3, seed=0)
    args = bench.parse_args(
        ["--branches", "2", "--slices", "6", "--horizon", "2", "--steps", "3", "--batch", "4"]
    )
    plain, _ = bench.train(bench.WORLD_MODELS["mlp"], data, args)
    calls, evaluations = [], []

    def fake_loss(wm, data, pairs, horizon):
        calls.append((pairs, horizon))

        def loss() -> torch.Tensor:
            evaluations.append(1)
            # Constant, but on the graph of a parameter: it goes through the backward pass.
            return 0.0 * next(wm.parameters()).sum() + 1.0

        return loss

    monkeypatch.setattr(bench, "branch_difference_loss", fake_loss)
    args.diff_weight = 10.0
    weighted, _ = bench.train(bench.WORLD_MODELS["mlp"], data, args)
    assert calls == [(2, 2)] and len(evaluations) == 3  # built once (batch / 2 pairs), per step
    # A constant extra loss has no gradient: the same batches give the same model.
    for a, b in zip(plain.parameters(), weighted.parameters(), strict=True):
        torch.testing.assert_close(a, b)
