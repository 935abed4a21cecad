"""docs/own_script.md: its TorchRL training loop on PendulumEnv runs as written (a few
iterations), every step moves the parameters it should, and the target critic follows."""

from __future__ import annotations

import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "own_script.md"
#: The doc's schedule, shortened to seconds: 2 random iterations, then 2 training iterations.
SHORTER = {
    "ITERATIONS = 300": "ITERATIONS = 4",
    "RANDOM_ITERATIONS = 8": "RANDOM_ITERATIONS = 2",
    "WM_WARMUP, WM_STEPS, WM_SLICES = 200, 8, 256": "WM_WARMUP, WM_STEPS, WM_SLICES = 2, 2, 16",
    "NUM_ENVS, H, EPISODE = 32, 16, 160": "NUM_ENVS, H, EPISODE = 8, 16, 32",
}


def test_own_script_runs_and_trains_every_part(capsys):
    (block,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    for old, new in SHORTER.items():
        assert block.count(old) == 1, old
        block = block.replace(old, new)
    # Snapshots taken right after the models exist: run the script up to the loop first.
    head, loop = block.split(
        "state = env.reset(env.gen_params(batch_size=[NUM_ENVS]), set_state=True)\n", 1
    )
    namespace: dict = {}
    exec(compile(head, str(DOC), "exec"), namespace)
    modules = {name: namespace[name] for name in ("world_model", "actor", "critic")}
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in modules.items()}
    target = namespace["value_loss"].target_critic_network_params
    target_before = target.clone()
    loop = "state = env.reset(env.gen_params(batch_size=[NUM_ENVS]), set_state=True)\n" + loop
    exec(compile(loop, str(DOC), "exec"), namespace)

    for name, module in modules.items():
        moved = [
            not torch.equal(a, p) for a, p in zip(before[name], module.parameters(), strict=True)
        ]
        assert any(moved), f"{name} did not train"
        assert all(torch.isfinite(p).all() for p in module.parameters()), name
    # The target critic moved by Polyak steps, and the actor bootstraps from it.
    assert not (target == target_before).all()
    assert namespace["actor_loss"].bootstrap_params is target
    out = capsys.readouterr().out
    assert "iteration 2: episode return " in out  # an episode is 2 chunks here
    assert re.search(r"evaluation: return -?\d+ per 32-step episode", out)
    assert namespace["buffer"].sample(3)["next", "reward_norm"].shape == (3, 16, 1)
