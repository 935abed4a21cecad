"""benchmarks/flow_actor_density.py: its measurements run and count what they claim."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from torchrl_flowmbpo.modules.actors import FlowActor, GaussianActor

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script(BENCHMARKS / "flow_actor_density.py", "flow_actor_density_bench")


def test_saved_bytes_counts_each_storage_once(bench):
    x = torch.randn(256, requires_grad=True)  # 1 KiB in float32
    assert bench.saved_bytes(lambda: (x * x).sum()) == 1024  # x saved twice, one storage


def test_the_entropy_term_costs_more_than_the_action_alone(bench):
    td = TensorDict(latent=torch.randn(16, 8), batch_size=[16])
    torch.manual_seed(0)
    flow = FlowActor(8, 2, hidden=(16,))
    _, plain = bench.measure(flow, td, bonus=False, repeats=1)
    _, with_density = bench.measure(flow, td, bonus=True, repeats=1)
    assert with_density > plain > 0
    # The Gaussian's entropy term is closed form: no noticeable extra graph.
    gaussian = GaussianActor(8, 2, hidden=(16,))
    assert bench.measure(gaussian, td, bonus=True, repeats=1)[1] > 0
