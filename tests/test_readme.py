"""The README's Python examples run as written, and the imagined rollout reaches the actor."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run_and_gradients_reach_the_actor():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1
    torch.manual_seed(0)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["traj"].shape == (32, 16)
    actor_grads = [p.grad for p in namespace["actor"].parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in actor_grads)
    # The world model stays out of the actor's first-order update in the loss example.
    assert torch.isfinite(namespace["losses"]["loss_actor"])
    assert torch.isfinite(namespace["critic_losses"]["loss_value"])
