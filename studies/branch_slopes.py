"""Can a world model learn the Ant's action slopes from its data? Branched vs chained data.

PWM's actor follows d(imagined return)/d(actions) through the world model. On the Ant, models
trained in the pipeline value behaviours well but their slopes are unrelated to the simulator's
(docs/archive/experiment_log.md: cosine ~0 from the trot's states). A policy's data
visit every state once, with one action, so the effect of *another* action at that state is
learnt only through generalisation across states. This study asks whether data that vary the
action at the same state teach the slope: the simulator is restarted at recorded states
(``set_state_from_observation``) and stepped open loop, giving

* ``--branches K``: ``slices / K`` start states with ``K`` action sequences each (``K = 1``: one
  sequence per state, the chained data a policy gives, on ``K×`` more states).

Start states: visited by the Ant's scripted trot
(``torchrl_flowmbpo.diagnostics.controllers.AntTrot``; one closed-loop episode, states spread over
it). Actions: uniform in [-0.5, 0.5] for ``horizon + 1`` steps, as ``examples/gradient_check.py``
scores them; branches whose Ant falls within a slice are dropped (the printout gives how many).
Every model is trained from scratch on the slices with the project's ``WorldModelLoss`` (rewards
divided by their std; Adam lr 3e-4, clip 20) and scored by
:func:`~torchrl_flowmbpo.diagnostics.action_gradient_accuracy` from
``--states`` held-out trot states (another seed) with fresh sequences: model vs simulator value
and gradient of the ``horizon``-step return (``--smooth σ``: the slopes of the return smoothed by
action noise σ, as ``examples/gradient_check.py --smooth``). Everything but the data's branching
is the same.

Usage:
    python studies/branch_slopes.py                      # K = 1 vs 16, MLP: 20-30 min here
    python studies/branch_slopes.py --smooth 0.3 --smooth-samples 256 --steps 8000
    python studies/branch_slopes.py --branches 16 --diff-weight 10 --wm flow --csv out.csv
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from model_gradients import fit, report
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule

from torchrl_flowmbpo.diagnostics import (
    action_gradient_accuracy,
    collect_rollouts,
    make_real_return,
)
from torchrl_flowmbpo.diagnostics.controllers import AntTrot
from torchrl_flowmbpo.envs import make_env
from torchrl_flowmbpo.modules.builders import build_world_model

#: World-model specs (``build_world_model``, without the dims).
WORLD_MODELS: dict[str, dict[str, Any]] = {
    "mlp": {"type": "mlp", "preset": "small"},
    "flow": {"type": "flow", "preset": "small", "integrator": "heun", "flow_steps": 2},
}
ACTION_RANGE = 0.5


def trot_states(count: int, worlds: int, seed: int) -> torch.Tensor:
    """``count`` observations ``[count, obs_dim]`` visited by the trot in ``worlds`` worlds over
    one episode (random steps of the alive ones; the trot falls in a fifth to a third)."""
    env = make_env("ant", num_envs=worlds, device="cpu", seed=seed)
    trot = TensorDictModule(AntTrot(), in_keys=["observation"], out_keys=["action"])
    rollout = collect_rollouts(env, trot, env.episode_length)
    alive = ~rollout.get(("next", "done")).squeeze(-1)
    observations = rollout.get("observation")[alive]
    generator = torch.Generator().manual_seed(seed)
    if observations.shape[0] < count:
        raise ValueError(f"{observations.shape[0]} alive trot states, fewer than {count} asked")
    return observations[torch.randperm(observations.shape[0], generator=generator)[:count]]


def branch_data(
    states: torch.Tensor, branches: int, length: int, seed: int
) -> tuple[TensorDictBase, float]:
    """``branches`` open-loop slices of ``length`` steps from each state, uniform actions in
    ``[-0.5, 0.5]``: ``[states * branches, length]`` transitions of the slices that stay alive
    (branches of a state are consecutive rows), and the fraction dropped for a fall."""
    starts = states.repeat_interleave(branches, 0)
    n = starts.shape[0]
    env = make_env("ant", num_envs=n, device="cpu", seed=seed)
    generator = torch.Generator().manual_seed(seed)
    actions = torch.rand(n, length, env.action_spec.shape[-1], generator=generator) * 2 - 1
    actions = actions * ACTION_RANGE
    td = env.set_state_from_observation(starts)
    steps = []
    for t in range(length):
        out = env.step(td.set("action", actions[:, t]))
        steps.append(out.select("observation", "action", "next").clone())
        td = env.step_mdp(out)
    data = torch.stack(steps, 1)
    group = torch.arange(n).div(branches, rounding_mode="floor")
    data.set("group", group.unsqueeze(-1).expand(n, length).clone())
    alive = ~data.get(("next", "done")).squeeze(-1).any(-1)
    return data[alive], 1.0 - float(alive.float().mean())


def branch_difference_loss(
    wm, data: TensorDictBase, pairs: int, horizon: int
) -> Callable[[], torch.Tensor]:
    """A loss on what the branches of one state disagree on: for ``pairs`` random pairs of
    branches (rows of one ``group``), the model's open-loop rewards from the shared start,
    ``r̂_t = r̂(z_t, a_t)``, ``z_{t+1} = next(z_t, a_t)``, must differ as the real ones do:
    ``mean_t ((r̂¹_t − r̂²_t) − (r¹_t − r²_t))²``. The state's own part cancels, so only the
    actions' effect is fitted, which a next-state regression need not weigh much."""
    group = data.get("group")[:, 0]
    members = [(group == g).nonzero().squeeze(-1) for g in group.unique().tolist()]
    shared = [rows for rows in members if rows.numel() >= 2]
    if not shared:
        raise ValueError("branch_difference_loss needs states with two or more kept branches")
    observation, action = data.get("observation")[:, 0], data.get("action")[:, :horizon]
    reward = data.get(("next", "reward"))[:, :horizon, 0]

    def loss() -> torch.Tensor:
        picks = torch.randint(len(shared), (pairs,)).tolist()
        two = torch.stack([shared[i][torch.randperm(shared[i].numel())[:2]] for i in picks])
        rows = torch.cat([two[:, 0], two[:, 1]])
        z, act, predicted = wm.encode(observation[rows]), action[rows], []
        for t in range(horizon):
            predicted.append(wm.reward(z, act[:, t]).reshape(-1))
            z = wm.next(z, act[:, t])
        pred, real = torch.stack(predicted, 1), reward[rows]
        return ((pred[:pairs] - pred[pairs:]) - (real[:pairs] - real[pairs:])).pow(2).mean()

    return loss


def train(
    spec: dict,
    data: TensorDictBase,
    args: argparse.Namespace,
) -> tuple[Any, float]:
    """A world model trained from scratch on whole slices (plus ``--diff-weight`` times
    :func:`branch_difference_loss` on ``batch / 2`` pairs); returns it and the reward scale."""
    torch.manual_seed(args.seed)
    obs_dim, action_dim = data.get("observation").shape[-1], data.get("action").shape[-1]
    wm = build_world_model(spec, obs_dim, action_dim)
    scale = float(data.get(("next", "reward")).std())
    data = data.clone()
    data.set(("next", "reward"), data.get(("next", "reward")) / scale)
    extra = None
    if args.diff_weight > 0:
        difference = branch_difference_loss(wm, data, args.batch // 2, args.horizon)
        extra = lambda: args.diff_weight * difference()  # noqa: E731
    sample = lambda: data[torch.randint(data.shape[0], (args.batch,))]  # noqa: E731
    fit(wm, sample, args.horizon, args.steps, extra)
    return wm, scale


def score(
    wm,
    scale: float,
    states: torch.Tensor,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """``action_gradient_accuracy`` from ``states`` with fresh sequences in [-0.5, 0.5]
    (finite differences, or the smoothed slopes with ``--smooth``)."""
    seed = args.seed + 1000
    env = make_env("ant", num_envs=states.shape[0], device="cpu", seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    shape = (states.shape[0], args.horizon, env.action_spec.shape[-1])
    actions = (torch.rand(shape, generator=generator) * 2 - 1) * ACTION_RANGE
    return action_gradient_accuracy(
        wm,
        states,
        actions,
        make_real_return(env, gamma=args.gamma),
        gamma=args.gamma,
        reward_scale=scale,
        smoothing=args.smooth,
        smoothing_samples=args.smooth_samples,
        generator=generator,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--branches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--wm", nargs="+", default=["mlp"], choices=list(WORLD_MODELS))
    parser.add_argument("--slices", type=int, default=2048, help="training slices per data set")
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2000, help="world-model steps")
    parser.add_argument("--batch", type=int, default=128, help="slices per step")
    parser.add_argument("--states", type=int, default=32, help="held-out scoring states")
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument(
        "--smooth", type=float, default=None, help="score the slopes smoothed by this action std"
    )
    parser.add_argument("--smooth-samples", type=int, default=128, help="antithetic pairs")
    parser.add_argument(
        "--diff-weight",
        type=float,
        default=0.0,
        help="weight of the branch-difference reward loss (needs --branches >= 2)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--csv", type=Path, default=None, help="append one row per model")
    args = parser.parse_args(argv)
    bad = [k for k in args.branches if k < 1 or args.slices % k]
    if bad:
        parser.error(f"--branches {bad}: each must be >= 1 and divide --slices {args.slices}")
    if args.diff_weight < 0 or (args.diff_weight > 0 and min(args.branches) < 2):
        parser.error(
            f"--diff-weight {args.diff_weight}: must be >= 0, and > 0 needs every --branches "
            f">= 2 (got {args.branches})"
        )
    if min(args.horizon, args.steps, args.batch - 1, args.states - 1) < 1:
        parser.error("need --horizon, --steps >= 1 and --batch, --states >= 2")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    held_out = trot_states(args.states, args.states, seed=args.seed + 1000)
    pool = trot_states(args.slices, 64, seed=args.seed)
    for branches in args.branches:
        data, dropped = branch_data(
            pool[: args.slices // branches], branches, args.horizon + 1, seed=args.seed
        )
        print(
            f"branches {branches}: {args.slices // branches} trot states x {branches}, "
            f"{data.shape[0]} slices of {args.horizon + 1} steps kept ({dropped:.1%} fell)",
            flush=True,
        )
        for name in args.wm:
            start = time.perf_counter()
            wm, scale = train(WORLD_MODELS[name], data, args)
            result = score(wm, scale, held_out, args)
            minutes = (time.perf_counter() - start) / 60
            text, per_step = report(name, result, minutes)
            print("  " + text, flush=True)
            if args.csv is not None:
                write_row(args, branches, name, data.shape[0], result, per_step)


def write_row(args, branches: int, name: str, kept: int, result: dict, per_step: str) -> None:
    new = not args.csv.exists()
    with args.csv.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(
                ["wm", "branches", "slices_kept", "steps", "seed", "smooth", "diff_weight",
                 "value_corr", "grad_cos_mean", "grad_cos_median", "sign_agreement",
                 "norm_ratio", "cos_per_step"]
            )  # fmt: skip
        writer.writerow(
            [name, branches, kept, args.steps, args.seed, args.smooth or "", args.diff_weight,
             result["value_corr"], result["grad_cos_mean"], result["grad_cos_median"],
             result["first_action_sign_agreement"], result["grad_norm_ratio"], per_step]
        )  # fmt: skip


if __name__ == "__main__":
    main()
