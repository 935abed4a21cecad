"""Which world model gives the actor the right slopes? An offline study on the cartpole.

PWM's actor follows d(imagined return)/d(actions) through the world model. This script trains
world models of several kinds on one fixed dataset and scores each with
:func:`torchrl_flowmbpo.diagnostics.action_gradient_accuracy` on held-out states: model vs real
value of 16-step open-loop action sequences, and model vs finite-difference gradients in the
simulator restarted at each state. Everything but the model is held fixed, so differences are
the model's.

Data: ``--envs`` cartpoles run ``--episodes`` full episodes (240 steps) under a behaviour policy
that mixes uniform random actions with energy pumping (``a = sign(θ̇ cos θ)`` plus noise), so the
data hold both the hanging and the swinging-up states a learning policy visits. Training: the
project's ``WorldModelLoss`` (H = 16 slices inside episodes, rewards divided by their std,
Adam lr 3e-4, clip 20), ``--steps`` steps of ``--batch`` slices. Evaluation: ``--states``
states from a separate set of episodes (another seed).

Usage:
    python studies/model_gradients.py --variant small                       # default model
    python studies/model_gradients.py --variant small --variant latent32 --csv out.csv
    python studies/model_gradients.py --list                                # variants
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict

from torchrl_flowmbpo.diagnostics import action_gradient_accuracy, make_real_return
from torchrl_flowmbpo.envs import make_env
from torchrl_flowmbpo.modules.builders import build_world_model
from torchrl_flowmbpo.objectives import WorldModelLoss

#: World-model specs compared (``build_world_model`` specs, without the dims).
VARIANTS: dict[str, dict[str, Any]] = {
    "small": {"type": "mlp", "preset": "small"},
    "latent32": {"type": "mlp", "preset": "small", "latent_dim": 32},
    "latent512": {"type": "mlp", "preset": "small", "latent_dim": 512},
    "narrow": {"type": "mlp", "encoder_units": (64,), "units": (128, 128), "latent_dim": 32},
    "twohot": {"type": "mlp", "preset": "small", "reward_head": "twohot"},
    "flow-heun-K2": {"type": "flow", "preset": "small", "integrator": "heun", "flow_steps": 2},
    "flow-euler-K4": {"type": "flow", "preset": "small", "integrator": "euler", "flow_steps": 4},
}
HORIZON = 16
OBS_DIM, ACTION_DIM = 5, 1


def behaviour_action(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Half the envs act uniformly at random, half pump energy with noise (per step)."""
    n = obs.shape[0]
    random = torch.rand(n, 1, generator=generator) * 2 - 1
    pump = torch.sign(obs[:, 4:5] * obs[:, 2:3]) + 0.5 * torch.randn(n, 1, generator=generator)
    use_pump = torch.arange(n).unsqueeze(-1) % 2 == 1
    return torch.where(use_pump, pump, random).clamp(-1.0, 1.0)


def collect(env_kwargs: dict, envs: int, episodes: int, seed: int) -> TensorDict:
    """``[envs * episodes, 240]`` transitions of the behaviour policy, one row per episode."""
    env = make_env("cartpole", num_envs=envs, device="cpu", seed=seed, **env_kwargs)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(episodes):
        td = env.reset()
        steps = []
        for _ in range(env.episode_length):
            td["action"] = behaviour_action(td["observation"], generator)
            td = env.step(td)
            steps.append(td.select("observation", "action", "next").clone())
            td = td["next"].exclude("reward", "done", "terminated", "truncated")
        rows.append(torch.stack(steps, 1))
    return torch.cat(rows, 0)


def fit(
    wm,
    sample: Callable[[], TensorDict],
    horizon: int,
    steps: int,
    extra_loss: Callable[[], torch.Tensor] | None = None,
) -> None:
    """``steps`` steps of ``WorldModelLoss`` on the batches ``sample()`` draws, plus
    ``extra_loss()`` if given (Adam lr 3e-4, gradients clipped at 20)."""
    loss_fn = WorldModelLoss(wm, horizon=horizon)
    optimizer = torch.optim.Adam(wm.parameters(), lr=3e-4)
    for _ in range(steps):
        loss = sum(v for k, v in loss_fn(sample()).items() if k.startswith("loss_"))
        if extra_loss is not None:
            loss = loss + extra_loss()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(wm.parameters(), 20.0)
        optimizer.step()


def train(spec: dict, data: TensorDict, steps: int, batch: int, seed: int) -> tuple[Any, float]:
    """Trains one world model on slices of ``data``; returns it and the reward scale."""
    torch.manual_seed(seed)
    wm = build_world_model(spec, OBS_DIM, ACTION_DIM)
    scale = float(data["next", "reward"].std())
    data = data.clone()
    data["next", "reward"] = data["next", "reward"] / scale
    episodes, length = data.shape

    def sample() -> TensorDict:
        rows = torch.randint(episodes, (batch,))
        starts = torch.randint(length - HORIZON, (batch,))
        return data[rows.unsqueeze(-1), starts.unsqueeze(-1) + torch.arange(HORIZON + 1)]

    fit(wm, sample, HORIZON, steps)
    return wm, scale


def report(name: str, result: dict[str, Any], minutes: float) -> tuple[str, str]:
    """``(printed lines, per-step cosines)`` of one model's ``action_gradient_accuracy``."""
    per_step = " ".join("nan" if math.isnan(c) else f"{c:.2f}" for c in result["grad_cos_per_step"])
    text = (
        f"{name:14s} value corr {result['value_corr']:.3f} | grad cos mean "
        f"{result['grad_cos_mean']:.3f} median {result['grad_cos_median']:.3f} | sign "
        f"{result['first_action_sign_agreement']:.2f} | norm ratio "
        f"{result['grad_norm_ratio']:.2f} | {minutes:.1f} min\n  cos per step: {per_step}"
    )
    return text, per_step


def score(wm, scale: float, states: torch.Tensor, env_kwargs: dict, gamma: float, seed: int):
    """``action_gradient_accuracy`` from ``states`` with random sequences in [-0.5, 0.5]."""
    generator = torch.Generator().manual_seed(seed)
    actions = torch.rand(states.shape[0], HORIZON, ACTION_DIM, generator=generator) - 0.5
    env = make_env("cartpole", num_envs=states.shape[0], device="cpu", seed=seed, **env_kwargs)
    return action_gradient_accuracy(
        wm, states, actions, make_real_return(env, gamma=gamma), gamma=gamma, reward_scale=scale
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", choices=list(VARIANTS))
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument("--reward-type", default="bounded", choices=["bounded", "shac"])
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--steps", type=int, default=900, help="world-model steps")
    parser.add_argument("--batch", type=int, default=256, help="slices per step")
    parser.add_argument("--states", type=int, default=256, help="held-out start states")
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--csv", type=Path, default=None, help="append one row per variant")
    args = parser.parse_args()
    if args.list:
        for name, spec in VARIANTS.items():
            print(f"{name:14s} {spec}")
        return
    torch.set_num_threads(args.threads)
    env_kwargs = {"reward_type": args.reward_type}
    data = collect(env_kwargs, args.envs, args.episodes, seed=args.seed)
    held_out = collect(env_kwargs, args.envs, 1, seed=args.seed + 1000)["observation"]
    picks = torch.randperm(held_out.shape[0] * held_out.shape[1])[: args.states]
    states = held_out.reshape(-1, OBS_DIM)[picks]
    print(f"data: {data.numel()} frames ({args.reward_type} reward); {args.steps} WM steps")
    for name in args.variant or ["small"]:
        start = time.perf_counter()
        wm, scale = train(VARIANTS[name], data, args.steps, args.batch, args.seed)
        result = score(wm, scale, states, env_kwargs, args.gamma, args.seed)
        minutes = (time.perf_counter() - start) / 60
        text, per_step = report(name, result, minutes)
        print(text, flush=True)
        if args.csv is not None:
            new = not args.csv.exists()
            with args.csv.open("a", newline="") as f:
                writer = csv.writer(f)
                if new:
                    writer.writerow(
                        ["variant", "reward_type", "steps", "seed", "value_corr", "grad_cos_mean",
                         "grad_cos_median", "sign_agreement", "norm_ratio", "cos_per_step"]
                    )  # fmt: skip
                writer.writerow(
                    [name, args.reward_type, args.steps, args.seed, result["value_corr"],
                     result["grad_cos_mean"], result["grad_cos_median"],
                     result["first_action_sign_agreement"], result["grad_norm_ratio"], per_step]
                )  # fmt: skip


if __name__ == "__main__":
    main()
