"""check_finite: one combined check, exact per-key counts in the error, no false alarms."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from torchrl_flowmbpo.objectives import NonFiniteBatchError, check_finite


def _batch(**values) -> TensorDict:
    return TensorDict(values, batch_size=[4])


def test_finite_batch_passes():
    check_finite(_batch(a=torch.randn(4, 3), b=torch.randn(4)), ["a", "b"], "Loss")


def test_finite_values_whose_sum_overflows_pass():
    # 3e38 + 3e38 is inf in float32: the combined check falls through to the exact count.
    big = torch.full((4, 2), 3e38)
    assert not torch.isfinite(big.sum())
    check_finite(_batch(a=big), ["a"], "Loss")


def test_error_names_every_bad_key_with_its_count():
    a, b, c = torch.randn(4, 3), torch.randn(4), torch.randn(4, 2)
    a[0, 1], a[2, 2] = float("nan"), float("inf")
    c[3, 0] = -float("inf")
    with pytest.raises(NonFiniteBatchError) as info:
        check_finite(_batch(a=a, b=b, c=c), ["a", "b", "c"], "MyLoss")
    message = str(info.value)
    assert message.startswith("MyLoss: non-finite values in the batch:")
    assert "'a' (2 non-finite of 12)" in message
    assert "'c' (1 non-finite of 8)" in message
    assert "'b'" not in message


def test_integer_and_bool_keys_are_not_checked():
    batch = _batch(n=torch.arange(4), done=torch.zeros(4, dtype=torch.bool))
    check_finite(batch, ["n", "done"], "Loss")


def test_missing_key_raises_key_error_naming_it():
    with pytest.raises(KeyError, match="Loss: the batch has no key 'x'"):
        check_finite(_batch(a=torch.randn(4)), ["a", "x"], "Loss")
