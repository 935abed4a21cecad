"""Does a checkpoint's world model rank simple behaviours as the simulator does?

    python examples/model_probe.py run/checkpoints/checkpoint_83.pt
    python examples/model_probe.py RUN_DIR --envs 64 --horizons 16 64 --seed 7

From the task's own start states (``envs`` fresh resets), each reference behaviour acts in the
real task; its actions are replayed open loop in the world model from the encoded first
observation, and the sums of raw rewards over the first ``h`` steps are compared. Behaviours:
``zero`` (a = 0), ``random`` (uniform in [-1, 1]), ``policy`` (the checkpoint's deterministic
actor, closed loop on real observations) and the task's scripted reference controllers
(``torchrl_flowmbpo.envs.controllers``: the cartpole's PD balancer ``pd``, the Ant's open-loop
``trot``). A model whose ranking of these differs from the simulator's misleads the
actor however well it fits the replay data on average (docs/learning_notes.md, session 6: a
scalar reward head that rated a falling policy above the PD balancer).

Real sums stop at an episode's first ``terminated`` step; model sums weight each reward by the
model's survival probability. Errors exit with status 1 and a one-line message.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_flowmbpo.diagnostics import pearson
from torchrl_flowmbpo.envs.controllers import REFERENCE_CONTROLLERS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import load_policy
from gradient_check import load_run, reward_units
from utils import make_task_env

Behaviour = Callable[[torch.Tensor], torch.Tensor]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="World-model vs real returns of behaviours.")
    parser.add_argument(
        "checkpoint", type=Path, help="a checkpoint_<iteration>.pt file, or a run directory"
    )
    parser.add_argument("--envs", type=int, default=64, help="start states (64)")
    parser.add_argument("--horizons", type=int, nargs="+", default=[16, 64], help="(16 64)")
    parser.add_argument("--seed", type=int, default=7, help="env and behaviour seed (7)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    args = parser.parse_args(argv)
    if args.envs < 2 or min(args.horizons) < 1:
        parser.error(f"need --envs >= 2 and --horizons >= 1, got {args.envs}, {args.horizons}")
    return args


def real_rollout(env, behaviour: Behaviour, steps: int) -> tuple[torch.Tensor, ...]:
    """``(first observations [N, obs], actions [N, T, act], rewards [N, T])``; rewards after
    an episode's first termination are zeroed."""
    td = env.reset()
    first = td.get("observation").clone()
    actions, rewards, alive = [], [], torch.ones(first.shape[0], device=first.device)
    for _ in range(steps):
        action = behaviour(td.get("observation"))
        td.set("action", action)
        td = env.step(td)
        actions.append(action)
        rewards.append(td.get(("next", "reward")).reshape(-1) * alive)
        alive = alive * (~td.get(("next", "terminated")).reshape(-1)).float()
        td = env.step_mdp(td)
    return first, torch.stack(actions, 1), torch.stack(rewards, 1)


def model_rewards(world_model, first, actions, scale: float, loc: float) -> torch.Tensor:
    """Raw rewards ``[N, T]`` of the open-loop replay, weighted by the model's survival."""
    latent, survival, rewards = world_model.encode(first), 1.0, []
    for t in range(actions.shape[1]):
        action = actions[:, t]
        raw = world_model.reward(latent, action).reshape(-1) * scale + loc
        rewards.append(raw * survival)
        survival = survival * world_model.continue_prob(latent, action).reshape(-1)
        latent = world_model.next(latent, action)
    return torch.stack(rewards, 1)


@torch.no_grad()
def probe(state, env, policy, horizons: list[int], seed: int) -> list[dict]:
    """One row per (behaviour, horizon): mean real and model sums and their correlation."""
    world_model = policy[0].module  # load_policy's first module is encoder_operator(world_model)
    scale, loc = reward_units(state)
    action_dim = env.action_spec.shape[-1]
    generator = torch.Generator(device=env.device).manual_seed(seed)

    def act(obs: torch.Tensor) -> torch.Tensor:
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            return policy(TensorDict(observation=obs, batch_size=obs.shape[:1])).get("action")

    behaviours: dict[str, Behaviour] = {
        "zero": lambda obs: torch.zeros(*obs.shape[:1], action_dim, device=obs.device),
        "random": lambda obs: (
            2 * torch.rand(*obs.shape[:1], action_dim, generator=generator, device=obs.device) - 1
        ),
        "policy": act,
    }
    controllers = REFERENCE_CONTROLLERS.get(state["specs"]["env"]["name"], {})
    behaviours.update({name: make() for name, make in controllers.items()})
    rows = []
    for name, behaviour in behaviours.items():
        env.set_seed(seed)  # every behaviour from the same start states
        first, actions, real = real_rollout(env, behaviour, max(horizons))
        model = model_rewards(world_model, first, actions, scale, loc)
        for h in horizons:
            real_sum, model_sum = real[:, :h].sum(1), model[:, :h].sum(1)
            rows.append(
                {
                    "behaviour": name,
                    "horizon": h,
                    "real": float(real_sum.mean()),
                    "model": float(model_sum.mean()),
                    "corr": pearson(real_sum, model_sum),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    path, state = load_run(args.checkpoint, "model_probe.py")
    torch.manual_seed(args.seed)
    try:
        env = make_task_env(
            state["specs"]["env"], num_envs=args.envs, device=args.device, seed=args.seed
        )
        policy = load_policy(state, env, args.device)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        sys.exit(f"model_probe.py: error: {path} cannot be rebuilt: {type(err).__name__}: {err}")
    rows = probe(state, env, policy, sorted(set(args.horizons)), args.seed)
    print(
        f"Model probe of {state['variant']} on {state['specs']['env']['name']} "
        f"({state['counters']['frames']} frames): sums of raw rewards from {args.envs} start "
        "states, real vs the model's open-loop replay of the same actions"
    )
    print(f"{'behaviour':>10s} {'steps':>6s} {'real':>10s} {'model':>10s} {'corr':>7s}")
    for row in rows:
        print(
            f"{row['behaviour']:>10s} {row['horizon']:6d} {row['real']:10.3f} "
            f"{row['model']:10.3f} {row['corr']:7.3f}"
        )


if __name__ == "__main__":
    main()
