"""Cost of the FlowActor's density in the actor update, and the untrained actors' action spread.

**Cost.** The entropy bonus (``PathwiseActorLoss._entropy``) draws one fresh action per imagined
state and differentiates its ``log π``. This times the actor's share of an actor update, forward
and backward, on ``--states`` states (the default 512 is the cartpole's actor batch of 32 starts
× H = 16): its pathwise action alone (what PWM's return needs), then with the entropy term, for
the Gaussian actor and the FlowActor with each ``log_det`` method (the world model and critic
parts of the update are the same for both and left out). Time: median of ``--repeats`` calls
after a warm-up, in process CPU time (on a shared machine other jobs stretch elapsed time, not
the work; with one thread CPU time is the work's time). Memory: the bytes of the tensors
autograd saves for the backward pass (``saved_tensors_hooks``; a device-independent proxy of
the graph's memory).

**Spread.** The per-state std of sampled actions (:func:`empirical_action_std`, as logged) of
untrained actors on latents of an untrained world-model encoder (SimNorm) fed standard-normal
observations, for the FlowActor's ``velocity_init`` ``default`` and ``zero`` and the Gaussian
actor; the reference is ``std(tanh(σ ε))`` at the initial σ.

Usage:
    python benchmarks/flow_actor_density.py                 # A = 1, 8, 21; latent 128
    python benchmarks/flow_actor_density.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from tensordict import TensorDict

from torchrl_flowmbpo.modules.actors import FlowActor, GaussianActor, empirical_action_std
from torchrl_flowmbpo.modules.models import PWMWorldModel


def saved_bytes(fn) -> int:
    """Bytes autograd saves for the backward pass of ``fn()`` (each storage counted once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def actor_step_loss(actor, td: TensorDict, bonus: bool) -> torch.Tensor:
    """The actor's share of an actor update: its pathwise action (what the return needs), plus,
    with ``bonus``, the entropy term as the loss computes it (a fresh action's ``−log π`` from
    the distribution rebuilt from the parameters the actor wrote)."""
    out = actor(td.copy())
    loss = out["action"].mean()
    if bonus:
        loss = loss - actor.module[-1].get_dist(out).rsample_and_log_prob()[1].mean()
    return loss


def measure(actor, td: TensorDict, bonus: bool, repeats: int) -> tuple[float, float]:
    """(median CPU ms of forward + backward, MiB saved for backward)."""
    params = list(actor.parameters())

    def step() -> None:
        torch.autograd.grad(actor_step_loss(actor, td, bonus), params, allow_unused=True)

    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.process_time()
        step()
        times.append(time.process_time() - start)
    mib = saved_bytes(lambda: actor_step_loss(actor, td, bonus)) / 2**20
    return 1e3 * statistics.median(times), mib


def cost_table(args: argparse.Namespace) -> None:
    print(
        f"\nActor share of one update (action, + entropy term), forward + backward, "
        f"{args.states} states, latent {args.latent}:"
    )
    print("| A | actor | entropy term | CPU ms (median) | MiB saved for backward |")
    print("|---|---|---|---|---|")
    for action_dim in args.action_dims:
        td = TensorDict(latent=torch.randn(args.states, args.latent), batch_size=[args.states])
        rows = []
        for label, kwargs, bonus in [
            ("gaussian", None, False),
            ("gaussian", None, True),
            ("flow", {}, False),
            ("flow", {"log_det": "exact"}, True),
            ("flow", {"log_det": "trace"}, True),
            ("flow", {"log_det": "hutchinson"}, True),
        ]:
            torch.manual_seed(0)
            if kwargs is None:
                actor = GaussianActor(args.latent, action_dim)
            else:
                actor = FlowActor(args.latent, action_dim, **kwargs)
            term = ("closed form" if kwargs is None else kwargs["log_det"]) if bonus else "none"
            rows.append((label, actor, term, bonus))
        for label, actor, term, bonus in rows:
            ms, mib = measure(actor, td, bonus, args.repeats)
            print(f"| {action_dim} | {label} | {term} | {ms:.1f} | {mib:.1f} |")


def spread_table(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    obs_dim = 5  # the cartpole's
    print(f"\nUntrained per-state action std (encoder latents {args.latent}, 256 states):")
    print("| A | flow, velocity_init=default | flow, velocity_init=zero | gaussian | tanh(σε) |")
    print("|---|---|---|---|---|")
    for action_dim in args.action_dims:
        # The scalar head, as measured (the reward head does not act here, but its size moves
        # the random stream the states below are drawn from).
        wm = PWMWorldModel(obs_dim, action_dim, latent_dim=args.latent, reward_head="scalar")
        with torch.no_grad():
            latent = wm.encode(torch.randn(256, obs_dim))
        td = TensorDict(latent=latent, batch_size=[256])
        values = []
        for make in (
            lambda a=action_dim: FlowActor(args.latent, a, velocity_init="default"),
            lambda a=action_dim: FlowActor(args.latent, a, velocity_init="zero"),
            lambda a=action_dim: GaussianActor(args.latent, a),
        ):
            stds = []
            for seed in range(3):
                torch.manual_seed(seed)
                stds.append(float(empirical_action_std(make(), td, num_samples=32)))
            values.append(f"{statistics.mean(stds):.3f} ({min(stds):.3f}–{max(stds):.3f})")
        reference = float(torch.tanh(math.exp(-1.0) * torch.randn(1_000_000)).std())
        print(f"| {action_dim} | {' | '.join(values)} | {reference:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--action-dims", type=int, nargs="+", default=[1, 8, 21])
    parser.add_argument("--latent", type=int, default=128)
    parser.add_argument("--states", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: A = 2, 32 states")
    args = parser.parse_args()
    if args.quick:
        args.action_dims, args.states, args.repeats = [2], 32, 1
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU")
    spread_table(args)
    cost_table(args)


if __name__ == "__main__":
    main()
