"""Tests for torchrl_flowmbpo.functional: symlog, two-hot encoding and soft cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch

from torchrl_flowmbpo.functional import (
    soft_cross_entropy,
    symexp,
    symlog,
    symlog_two_hot_decode,
    symlog_two_hot_encode,
    two_hot_decode,
    two_hot_encode,
    two_hot_support,
)


class TestSymlog:
    def test_known_values(self):
        x = torch.tensor([-(math.e**2 - 1), -(math.e - 1), 0.0, math.e - 1], dtype=torch.float64)
        torch.testing.assert_close(
            symlog(x), torch.tensor([-2.0, -1.0, 0.0, 1.0], dtype=torch.float64)
        )

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_inverse_pair(self, dtype):
        x = torch.cat(
            [
                torch.tensor([0.0, -0.0, 1e-8, -1e-8, 1e4, -1e4], dtype=dtype),
                torch.linspace(-100.0, 100.0, 2001, dtype=dtype),
            ]
        )
        torch.testing.assert_close(symexp(symlog(x)), x)
        y = torch.linspace(-20.0, 20.0, 401, dtype=dtype)  # symexp(20) ~ 4.9e8, finite in float32
        torch.testing.assert_close(symlog(symexp(y)), y)

    def test_odd_and_monotonic(self):
        x = torch.linspace(-50.0, 50.0, 1001, dtype=torch.float64)
        torch.testing.assert_close(symlog(-x), -symlog(x))
        assert (symlog(x).diff() > 0).all()
        # Near 0 symlog is the identity to first order (slope 1), so small rewards keep their scale.
        assert symlog(torch.tensor(1e-6, dtype=torch.float64)).item() == pytest.approx(1e-6)


class TestTwoHotSupport:
    def test_default_grid(self):
        support = two_hot_support()
        assert support.shape == (101,)
        assert support.dtype == torch.get_default_dtype()
        assert support[0].item() == -10.0
        assert support[-1].item() == 10.0
        torch.testing.assert_close(support.diff(), torch.full((100,), 0.2))
        # Exactly symmetric with an exact 0 bin (float32 torch.linspace gives -1.5e-7 there).
        assert support[50].item() == 0.0
        assert torch.equal(support, -support.flip(0))

    def test_dtype_and_validation(self):
        assert two_hot_support(dtype=torch.float64).dtype == torch.float64
        with pytest.raises(ValueError, match="num_bins"):
            two_hot_support(num_bins=1)
        with pytest.raises(ValueError, match="vmax"):
            two_hot_support(1.0, -1.0)


class TestTwoHotEncode:
    def test_golden(self):
        support = torch.tensor([-1.0, 0.0, 1.0])
        x = torch.tensor([0.25, -0.5, 1.0, -3.0, 7.0, 0.0])
        expected = torch.tensor(
            [
                [0.0, 0.75, 0.25],  # 0.25 = 0.75 * 0 + 0.25 * 1
                [0.5, 0.5, 0.0],
                [0.0, 0.0, 1.0],  # the top edge goes entirely to the last bin
                [1.0, 0.0, 0.0],  # below the support: saturates at the first bin
                [0.0, 0.0, 1.0],  # above the support: saturates at the last bin
                [0.0, 1.0, 0.0],
            ]
        )
        torch.testing.assert_close(two_hot_encode(x, support), expected)

    @pytest.mark.parametrize(
        ("vmin", "vmax", "num_bins"), [(-10.0, 10.0, 101), (-3.0, 5.0, 17), (0.0, 1.0, 2)]
    )
    def test_round_trip_and_simplex(self, vmin, vmax, num_bins):
        support = two_hot_support(vmin, vmax, num_bins, dtype=torch.float64)
        x = torch.empty(4, 3, 128, dtype=torch.float64).uniform_(vmin, vmax, generator=_gen(0))
        x[0, 0, :num_bins] = support  # values exactly on bins, edges included
        probs = two_hot_encode(x, support)
        assert probs.shape == (*x.shape, num_bins)
        assert (probs >= 0).all()
        torch.testing.assert_close(probs.sum(-1), torch.ones_like(x), rtol=0, atol=1e-12)
        assert ((probs > 0).sum(-1) <= 2).all()
        # The (at most) two non-zero bins are adjacent.
        nonzero = probs > 0
        first = nonzero.float().argmax(-1)
        last = num_bins - 1 - nonzero.flip(-1).float().argmax(-1)
        assert ((last - first) <= 1).all()
        # Mean of the encoded distribution is x, and decoding log(probs) recovers it.
        torch.testing.assert_close(probs @ support, x, rtol=0, atol=1e-12)
        torch.testing.assert_close(two_hot_decode(probs.log(), support), x, rtol=0, atol=1e-5)

    def test_round_trip_float32_default_support(self):
        support = two_hot_support()
        x = torch.linspace(-9.999, 9.999, 10_001)
        torch.testing.assert_close(
            two_hot_decode(two_hot_encode(x, support).log(), support), x, rtol=0, atol=1e-5
        )

    def test_saturates_outside_support(self):
        support = two_hot_support()
        x = torch.tensor([-1e6, -10.5, 10.5, 1e6])
        probs = two_hot_encode(x, support)
        assert probs[:2, 0].tolist() == [1.0, 1.0]
        assert probs[2:, -1].tolist() == [1.0, 1.0]
        torch.testing.assert_close(
            two_hot_decode(probs.log(), support), torch.tensor([-10.0, -10.0, 10.0, 10.0])
        )

    def test_follows_input_dtype(self):
        support = two_hot_support()  # float32
        probs = two_hot_encode(torch.tensor([0.3, -2.7], dtype=torch.float64), support)
        assert probs.dtype == torch.float64
        torch.testing.assert_close(
            probs @ support.double(), torch.tensor([0.3, -2.7], dtype=torch.float64)
        )


class TestDecodeAndCrossEntropy:
    def test_uniform_logits_decode_to_zero_on_symmetric_support(self):
        support = two_hot_support()
        decoded = two_hot_decode(torch.zeros(3, 101), support)
        torch.testing.assert_close(decoded, torch.zeros(3), rtol=0, atol=1e-6)

    def test_decode_is_softmax_expectation(self):
        support = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
        logits = torch.tensor([0.0, math.log(2.0), math.log(3.0)], dtype=torch.float64)
        # softmax = (1, 2, 3) / 6, expectation = (-1 + 0 + 6) / 6 = 5 / 6.
        assert two_hot_decode(logits, support).item() == pytest.approx(5 / 6, abs=1e-12)

    def test_soft_cross_entropy_golden(self):
        # Logits (0, ln 2, ln 3) give softmax (1, 2, 3) / 6, so
        #   log_softmax = (ln 1/6, ln 2/6, ln 3/6) = (ln 1/6, ln 1/3, ln 1/2).
        # Target (0, 0.25, 0.75):
        #   CE = -(0 * ln 1/6 + 0.25 * ln 1/3 + 0.75 * ln 1/2)
        #      = 0.25 * ln 3 + 0.75 * ln 2
        #      = 0.25 * 1.0986122887 + 0.75 * 0.6931471806
        #      = 0.2746530722 + 0.5198603854 = 0.7945134576
        logits = torch.tensor([0.0, math.log(2.0), math.log(3.0)])
        target = torch.tensor([0.0, 0.25, 0.75])
        assert soft_cross_entropy(logits, target).item() == pytest.approx(0.7945134576, abs=1e-6)
        # Adding a constant to every logit changes nothing (softmax is shift-invariant).
        shifted = soft_cross_entropy(logits + 5.0, target).item()
        assert shifted == pytest.approx(0.7945134576, abs=1e-6)

    def test_soft_cross_entropy_matches_torch_for_probability_targets(self):
        logits = torch.randn(4, 7, 11, generator=_gen(1))
        target = torch.softmax(torch.randn(4, 7, 11, generator=_gen(2)), dim=-1)
        expected = torch.nn.functional.cross_entropy(
            logits.reshape(-1, 11), target.reshape(-1, 11), reduction="none"
        ).reshape(4, 7)
        ce = soft_cross_entropy(logits, target)
        assert ce.shape == (4, 7)
        torch.testing.assert_close(ce, expected)

    def test_soft_cross_entropy_minimised_at_target(self):
        # CE(target) = entropy(target) is the minimum; any other logits give more.
        target = torch.tensor([0.0, 0.0, 0.6, 0.4, 0.0], dtype=torch.float64)
        entropy = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))
        # log(1e-300) instead of log(0): finite logits, and exp(-690) adds no measurable mass.
        logits = target.clamp_min(1e-300).log()
        assert soft_cross_entropy(logits, target).item() == pytest.approx(entropy, abs=1e-12)
        assert soft_cross_entropy(torch.zeros(5, dtype=torch.float64), target).item() > entropy


class TestSymlogTwoHot:
    def test_round_trip_raw_rewards(self):
        support = two_hot_support()
        r = torch.linspace(-50.0, 50.0, 1001)
        decoded = symlog_two_hot_decode(symlog_two_hot_encode(r, support).log(), support)
        # symexp amplifies a symlog-space error e by about (1 + |r|), hence the relative term.
        torch.testing.assert_close(decoded, r, rtol=1e-5, atol=1e-5)

    def test_is_symlog_space_not_raw_space(self):
        # r = e^3 - 1 sits exactly on the symlog bin 3.0 (index 65 of the default grid); a
        # raw-space encoding would saturate it at the top bin (10) instead.
        support = two_hot_support(dtype=torch.float64)
        r = torch.tensor(math.e**3 - 1, dtype=torch.float64)
        probs = symlog_two_hot_encode(r, support)
        assert probs.argmax().item() == 65
        assert probs[65].item() == pytest.approx(1.0, abs=1e-9)

    def test_soft_ce_fit_decodes_rewards_but_mse_fit_collapses_to_zero(self):
        """Regression test for the Flow-MBPO-PWM fork's reward head (docs/algorithm.md).

        The fork regressed all 101 logits on the scalar reward with MSE. MSE drives every logit to
        r, so the logits are all equal, the softmax is uniform, and a uniform distribution over a
        symmetric support has expectation 0: the decoded reward is ~0 whatever r is. Soft
        cross-entropy against the symlog two-hot target decodes back to r.
        """
        support = two_hot_support()
        r = torch.tensor([-20.0, -3.0, 0.5, 2.0, 7.0])
        target = symlog_two_hot_encode(r, support)

        def fit(loss_fn):
            # Free logits per sample = the zero-initialised last layer of a head on fixed inputs.
            logits = torch.zeros(5, 101, requires_grad=True)
            optimizer = torch.optim.Adam([logits], lr=0.1)
            for _ in range(500):
                optimizer.zero_grad()
                loss_fn(logits).mean().backward()
                optimizer.step()
            return logits.detach()

        mse_logits = fit(lambda logits: (logits - r.unsqueeze(-1)).pow(2))
        ce_logits = fit(lambda logits: soft_cross_entropy(logits, target))

        # MSE: every bin gets the same gradient, so each row's logits stay exactly equal while
        # they move towards r; the decoded reward is 0 whatever r is.
        assert torch.equal(mse_logits, mse_logits[:, :1].expand(5, 101))
        torch.testing.assert_close(mse_logits[:, 0], r, rtol=0, atol=0.5)
        assert symlog_two_hot_decode(mse_logits, support).abs().max().item() < 1e-6
        # Soft CE: decodes to the target rewards (within 2 %; the residual is softmax mass that
        # 500 Adam steps have not yet pushed off the non-target bins).
        torch.testing.assert_close(symlog_two_hot_decode(ce_logits, support), r, rtol=0.02, atol=0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
