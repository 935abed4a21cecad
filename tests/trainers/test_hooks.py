"""HookedLoop: TorchRL's registration API, ops called in order, dicts merged into the metrics."""

from __future__ import annotations

import pytest

from torchrl_flowmbpo.trainers import HOOK_STAGES, HookedLoop


def test_ops_run_in_registration_order_and_merge_their_metrics():
    loop, calls = HookedLoop(), []
    loop.register_op("post_eval", lambda m: calls.append(("a", dict(m))) or {"x": 1.0})
    loop.register_op("post_eval", lambda m: calls.append(("b", dict(m))) or {"x": 2.0, "y": 3.0})
    loop.register_op("post_eval", lambda m: calls.append(("c", dict(m))))  # returns nothing
    metrics = {"loss": 0.5}
    loop.call_hooks("post_eval", metrics, merge_into=metrics)
    assert [name for name, _ in calls] == ["a", "b", "c"]
    assert metrics == {"loss": 0.5, "x": 2.0, "y": 3.0}  # the later op wins
    # Other stages' ops do not run.
    loop.call_hooks("post_optim", metrics, None)
    assert len(calls) == 3


def test_unknown_stage_is_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"Unknown hook stage 'post_loss'; allowed: \['batch"):
        HookedLoop().register_op("post_loss", print)
    assert {"batch_process", "post_optim", "post_steps_log", "shutdown"} <= set(HOOK_STAGES)
