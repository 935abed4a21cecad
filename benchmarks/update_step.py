"""Time and peak memory of one PWM iteration, through TorchRL and through a plain-PyTorch loop.

One iteration is what ``examples/pwm_flow.py`` runs per training iteration (algorithm.md §11):
one actor step on ``actor_batch`` imagined starts, ``critic_iterations x critic_minibatches``
critic steps on its rollout, then ``wm_steps`` world-model steps on ``wm_batch`` slices of
``H + 1`` steps. Data are synthetic (Ant dims: obs 37, act 8), generated before timing.

Two implementations run side by side in one process per configuration:

* ``ours``: :class:`~torchrl_flowmbpo.recipes.PWMUpdater` with ``WorldModelLoss``,
  ``PWMActorLoss`` (imagination through ``ImaginedLatentEnv.rollout``) and ``PWMValueLoss``
  (TorchRL's ``td_lambda_return_estimate``), on TensorDict batches;
* ``plain``: the same losses written by hand on plain tensors (:func:`plain_world_model_loss`,
  :func:`plain_actor_loss`, :func:`plain_td_lambda`, :func:`plain_critic_loss`), calling the
  same plain ``nn.Module`` s directly: ``world_model.encode/next/reward/termination_logit``
  (``velocity`` for flow matching), the actor's ``policy_net`` and the critic's ``net``.

Both start from identical copies of the same networks and optimiser settings, so only the wrapper
overhead differs. The ``-ckpt`` configurations build the flow world model with
``grad_checkpoint=True``; both paths then checkpoint its ODE solve (both call its ``next``).
Timings: median of ``--repeats`` iterations per path after one warm-up iteration each, the two paths
alternating. Memory: peak RSS growth during an iteration (CPU: ``VmHWM`` reset through
``/proc/self/clear_refs`` after ``malloc_trim``, falling back to the ``ru_maxrss`` growth of the
first iteration; CUDA: ``max_memory_allocated`` growth), max over the timed iterations. Adam state
is allocated before any measurement. Each configuration runs in a fresh subprocess.

Usage:
    python benchmarks/update_step.py --quick                     # smoke run, small size
    python benchmarks/update_step.py --configs mlp flow-heun-K2 flow-heun-K4 flow-actor
    python benchmarks/update_step.py --configs mlp flow-heun-K4 flow-heun-K4-ckpt  # checkpointing
    python benchmarks/update_step.py --device cuda --repeats 10  # all configurations
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torch import nn

from torchrl_flowmbpo.modules.models.flow_world_model import FlowWorldModel
from torchrl_flowmbpo.objectives import PWMActorLoss, PWMValueLoss, WorldModelLoss
from torchrl_flowmbpo.recipes import build_actor, build_critic, build_world_model
from torchrl_flowmbpo.recipes.update import PWMUpdater

OBS_DIM, ACTION_DIM = 37, 8  # Ant
GAMMA, LMBDA, WM_RHO = 0.99, 0.95, 0.99
GRAD_CLIPS = {"world_model": 20.0, "actor": 1.0, "critic": 100.0}

SIZES = {
    # the reference "5M" setting (Ant: num_envs 128 actor starts)
    "5M": {"preset": "5M", "horizon": 16, "wm_batch": 256, "actor_batch": 128},
    "small": {"preset": "small", "horizon": 8, "wm_batch": 32, "actor_batch": 32},
}
SCHEDULE = {"wm_steps": 8, "critic_iterations": 8, "critic_minibatches": 4}


def _config_specs() -> dict[str, tuple[dict, dict]]:
    specs = {"mlp": ({"type": "mlp"}, {"type": "gaussian"})}
    for integrator in ("euler", "heun", "rk4"):
        for k in (2, 4, 8):
            wm = {"type": "flow", "integrator": integrator, "substeps": k}
            specs[f"flow-{integrator}-K{k}"] = (wm, {"type": "gaussian"})
    for k in (2, 4):  # the ODE solve activation-checkpointed (FlowWorldModel grad_checkpoint)
        wm = {"type": "flow", "integrator": "heun", "substeps": k, "grad_checkpoint": True}
        specs[f"flow-heun-K{k}-ckpt"] = (wm, {"type": "gaussian"})
    specs["flow-actor"] = ({"type": "mlp"}, {"type": "flow"})
    return specs


CONFIGS = _config_specs()


# --------------------------------------------------------------------------- plain PyTorch loop


def plain_world_model_loss(
    wm: nn.Module,
    obs: torch.Tensor,
    action: torch.Tensor,
    reward: torch.Tensor,
    terminated: torch.Tensor,
    *,
    horizon: int,
    rho: float = WM_RHO,
    term_pos_weight: float = 1.0,
) -> torch.Tensor:
    """PWM's world-model loss by hand (algorithm.md §3, §5, §6), flow_source ``rollout``.

    ``obs`` is ``[B, >= H+1, obs]`` (o_0..o_H), ``action``/``reward``/``terminated`` are
    ``[B, >= H, .]``. Scalar reward head; termination head if the model has one. Returns
    ``(L_dyn + L_rew + L_term) / H`` (all coefficients 1).
    """
    if wm.reward_head_type != "scalar":
        raise ValueError("the plain loop implements the scalar reward head only")
    with torch.no_grad():
        targets = wm.encode(obs[:, 1 : horizon + 1])
    flow = isinstance(wm, FlowWorldModel)
    pos_weight = torch.tensor([term_pos_weight], device=obs.device)
    z = wm.encode(obs[:, 0])
    dyn, rew, term = [], [], []
    for t in range(horizon):
        a, target = action[:, t], targets[:, t]
        rew.append((wm.reward(z, a) - reward[:, t]).pow(2).squeeze(-1))
        if wm.has_termination:
            logit = wm.termination_logit(z, a)
            term.append(
                F.binary_cross_entropy_with_logits(
                    logit, terminated[:, t].to(logit.dtype), pos_weight=pos_weight, reduction="none"
                ).squeeze(-1)
            )
        z_next = wm.next(z, a)
        if flow:  # conditional flow matching from the rolled-out latent to sg(E(o_{t+1}))
            tau = torch.rand(*z.shape[:-1], 1, device=z.device, dtype=z.dtype)
            v = wm.velocity((1 - tau) * z + tau * target, a, tau)
            dyn.append((v - (target - z)).pow(2).mean(-1))
        else:
            dyn.append((z_next - target).pow(2).mean(-1))
        z = z_next
    weights = rho ** torch.arange(horizon, dtype=torch.float32, device=obs.device)
    loss = (weights * torch.stack(dyn, 1).mean(0)).sum() + (weights * torch.stack(rew, 1)).mean()
    if term:
        loss = loss + (weights * torch.stack(term, 1)).mean()
    return loss / horizon


def plain_sample_action(policy_net: nn.Module, latent: torch.Tensor) -> torch.Tensor:
    """``tanh(μ + σ ε)`` (GaussianPolicyNet) or ``tanh(Φ_ψ(σ ε; z))`` (FlowPolicyNet)."""
    if hasattr(policy_net, "transport"):
        cond, scale = policy_net(latent)
        return policy_net.transport(cond, scale * torch.randn_like(scale))
    loc, scale = policy_net(latent)
    return torch.tanh(loc + scale * torch.randn_like(loc))


class PlainRetRMS:
    """Running variance of the per-start actor loss (Chan's parallel update), PWM's ret_rms."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, x: torch.Tensor) -> None:
        var, mean = torch.var_mean(x.detach().double(), correction=0)
        var, mean, n = float(var), float(mean), x.numel()
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.var, self.count = m2 / total, total


def plain_actor_loss(
    wm: nn.Module,
    policy_net: nn.Module,
    critic_net: nn.Module,
    obs: torch.Tensor,
    *,
    horizon: int,
    gamma: float = GAMMA,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-start ``−J`` of an H-step imagined rollout (algorithm.md §9) and the detached rollout.

    World model and critic must be held out by the caller (``requires_grad_(False)``).
    """
    z = wm.encode(obs)
    latents, next_latents, rewards, logits = [], [], [], []
    for _ in range(horizon):
        a = plain_sample_action(policy_net, z)
        rewards.append(wm.reward(z, a))
        logits.append(wm.termination_logit(z, a))
        latents.append(z)
        z = wm.next(z, a)
        next_latents.append(z)
    bootstrap = critic_net(z)[1]
    reward = torch.stack(rewards)  # [H, B, 1]
    cont = 1.0 - torch.sigmoid(torch.stack(logits))
    survival_all = torch.cat([torch.ones_like(cont[:1]), cont]).cumprod(0)
    discount = gamma ** torch.arange(horizon, dtype=reward.dtype, device=reward.device)
    ret = (discount.view(-1, 1, 1) * survival_all[:-1] * reward).sum(0)
    ret = ret + gamma**horizon * survival_all[-1] * bootstrap
    traj = {
        "latent": torch.stack(latents).detach(),
        "next_latent": torch.stack(next_latents).detach(),
        "reward": reward.detach(),
        "continue": cont.detach(),
        "survival": survival_all[:-1].detach(),
    }
    return -ret.squeeze(-1), traj


@torch.no_grad()
def plain_td_lambda(
    reward: torch.Tensor, cont: torch.Tensor, next_value: torch.Tensor, gamma: float, lmbda: float
) -> torch.Tensor:
    """``G_t = r_t + γ c_t [(1−λ) V_{t+1} + λ G_{t+1}]``, ``G_{H−1} = r + γ c V_H``; time dim 0."""
    g = reward[-1] + gamma * cont[-1] * next_value[-1]
    out = [g]
    for t in range(reward.shape[0] - 2, -1, -1):
        g = reward[t] + gamma * cont[t] * ((1 - lmbda) * next_value[t] + lmbda * g)
        out.append(g)
    return torch.stack(out[::-1])


def plain_critic_loss(
    critic_net: nn.Module, latent: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """``mean_{k, samples} Γ (V_k(z) − G)²``."""
    members = critic_net(latent)[0]  # [N, M, 1]
    return ((members - target.unsqueeze(-2)).pow(2) * weight.unsqueeze(-2)).mean()


def _plain_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    grad_norm = nn.utils.clip_grad_norm_(params, clip)
    if torch.isfinite(grad_norm):
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)


class PlainIteration:
    """One PWM iteration on plain tensors and the plain nn.Modules."""

    def __init__(self, wm, actor, critic, optimizers, data, size) -> None:
        self.wm, self.policy_net, self.critic_net = wm, actor.policy_net, critic.net
        self.optimizers, self.data, self.size = optimizers, data, size
        self.ret_rms = PlainRetRMS()
        self.held_out = [p for m in (wm, critic) for p in m.parameters()]

    def __call__(self) -> None:
        horizon = self.size["horizon"]
        flags = [p.requires_grad for p in self.held_out]
        for p in self.held_out:
            p.requires_grad_(False)
        try:
            per_start, traj = plain_actor_loss(
                self.wm, self.policy_net, self.critic_net, self.data["start"], horizon=horizon
            )
        finally:
            for p, flag in zip(self.held_out, flags, strict=True):
                p.requires_grad_(flag)
        self.ret_rms.update(per_start)
        loss = per_start.mean() / math.sqrt(self.ret_rms.var + 1e-5)
        _plain_step(self.optimizers["actor"], loss, GRAD_CLIPS["actor"])
        with torch.no_grad():
            next_value = self.critic_net(traj["next_latent"])[1]
        target = plain_td_lambda(traj["reward"], traj["continue"], next_value, GAMMA, LMBDA)
        latent = traj["latent"].reshape(-1, traj["latent"].shape[-1])
        target, weight = target.reshape(-1, 1), traj["survival"].reshape(-1, 1)
        minibatch = latent.shape[0] // SCHEDULE["critic_minibatches"]
        for _ in range(SCHEDULE["critic_iterations"]):
            for idx in torch.randperm(latent.shape[0], device=latent.device).split(minibatch):
                loss = plain_critic_loss(self.critic_net, latent[idx], target[idx], weight[idx])
                _plain_step(self.optimizers["critic"], loss, GRAD_CLIPS["critic"])
        for obs, action, reward, terminated in self.data["wm_plain"]:
            loss = plain_world_model_loss(self.wm, obs, action, reward, terminated, horizon=horizon)
            _plain_step(self.optimizers["world_model"], loss, GRAD_CLIPS["world_model"])


# --------------------------------------------------------------------------------- TorchRL path


class OursIteration:
    """One PWM iteration through PWMUpdater and the TorchRL losses."""

    def __init__(self, wm, actor, critic, optimizers, data, size) -> None:
        horizon = size["horizon"]
        wm_loss = WorldModelLoss(wm, horizon=horizon, wm_rho=WM_RHO, flow_source="rollout")
        value_loss = PWMValueLoss(critic, gamma=GAMMA, lmbda=LMBDA)
        actor_loss = PWMActorLoss(actor, critic, wm, horizon=horizon, gamma=GAMMA, ret_rms=True)
        self.updater = PWMUpdater(
            wm_loss,
            actor_loss,
            value_loss,
            optimizers,
            GRAD_CLIPS,
            critic_iterations=SCHEDULE["critic_iterations"],
            critic_minibatches=SCHEDULE["critic_minibatches"],
        )
        self.data = data

    def __call__(self) -> None:
        self.updater.actor_critic_step(self.data["start_td"])
        for batch in self.data["wm_td"]:
            self.updater.world_model_step(batch)


# ------------------------------------------------------------------------------------- set-up


def build_models(config: str, size: dict, device: str, seed: int = 0):
    """World model, actor and critic of a configuration (seeded)."""
    torch.manual_seed(seed)
    wm_spec, actor_spec = CONFIGS[config]
    wm_spec = {**wm_spec, "preset": size["preset"], "reward_head": "scalar"}
    wm = build_world_model({**wm_spec, "termination_head": True}, OBS_DIM, ACTION_DIM).to(device)
    actor = build_actor(actor_spec, wm.latent_dim, ACTION_DIM).to(device)
    critic = build_critic({}, wm.latent_dim).to(device)
    return wm, actor, critic


def make_optimizers(wm, actor, critic) -> dict[str, torch.optim.Optimizer]:
    """As examples/utils.make_optimizers (LR schedule left out), with Adam state allocated."""
    optimizers = {
        "world_model": torch.optim.Adam(wm.parameters(), lr=3e-4),
        "actor": torch.optim.Adam(actor.parameters(), lr=5e-4, betas=(0.7, 0.95)),
        "critic": torch.optim.Adam(critic.parameters(), lr=5e-4, betas=(0.7, 0.95)),
    }
    for optimizer in optimizers.values():  # zero-gradient step: allocates state, moves nothing
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return optimizers


def make_wm_batch(size: dict, device: str, generator: torch.Generator) -> TensorDict:
    """A ``[wm_batch, H+1]`` replay-style batch of random slices."""
    b, t = size["wm_batch"], size["horizon"] + 1
    seq = torch.randn(b, t + 1, OBS_DIM, generator=generator)
    batch = TensorDict(
        {
            "observation": seq[:, :-1],
            "action": torch.rand(b, t, ACTION_DIM, generator=generator) * 2 - 1,
            ("next", "observation"): seq[:, 1:],
            ("next", "reward"): torch.randn(b, t, 1, generator=generator),
            ("next", "terminated"): torch.rand(b, t, 1, generator=generator) < 0.02,
        },
        batch_size=[b, t],
    )
    return batch.to(device)


def plain_wm_tensors(batch: TensorDict) -> tuple[torch.Tensor, ...]:
    """``(o_0..o_H, a, r, terminated)`` plain tensors of a batch."""
    obs = torch.cat([batch["observation"][:, :1], batch["next", "observation"]], 1)
    return (
        obs.contiguous(),
        batch["action"].contiguous(),
        batch["next", "reward"].contiguous(),
        batch["next", "terminated"].contiguous(),
    )


def make_data(size: dict, device: str, seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    wm_td = [make_wm_batch(size, device, generator) for _ in range(SCHEDULE["wm_steps"])]
    start = torch.randn(size["actor_batch"], OBS_DIM, generator=generator).to(device)
    return {
        "wm_td": wm_td,
        "wm_plain": [plain_wm_tensors(b) for b in wm_td],
        "start_td": TensorDict({"observation": start}, batch_size=[start.shape[0]]),
        "start": start,
    }


# ------------------------------------------------------------------------------------ measuring


_LIBC = None


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    global _LIBC
    gc.collect()
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], None], device: str, first: bool) -> tuple[float, float | None]:
    """``(seconds, peak memory growth in MiB or None)`` of one call of ``fn``."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        return elapsed, (torch.cuda.max_memory_allocated() - base) / 2**20
    if _reset_peak_rss():
        base = _rss_kib("VmRSS")
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        return elapsed, (_rss_kib("VmHWM") - base) / 1024
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    return elapsed, grown / 1024 if first else None


def run_worker(config: str, size_name: str, device: str, threads: int, repeats: int) -> dict:
    """Times both paths of one configuration in this process."""
    torch.set_num_threads(threads)
    size = SIZES[size_name]
    ours_models = build_models(config, size, device)
    plain_models = copy.deepcopy(ours_models)
    data = make_data(size, device)
    paths = {
        "ours": OursIteration(*ours_models, make_optimizers(*ours_models), data, size),
        "plain": PlainIteration(*plain_models, make_optimizers(*plain_models), data, size),
    }
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    memory: dict[str, list[float]] = {"ours": [], "plain": []}
    for name, fn in paths.items():  # warm-up; the ru_maxrss fallback measures this one
        _, mem = measure(fn, device, first=True)
        if mem is not None:
            memory[name].append(mem)
    for r in range(repeats):
        order = ("ours", "plain") if r % 2 == 0 else ("plain", "ours")
        for name in order:
            elapsed, mem = measure(paths[name], device, first=False)
            times[name].append(elapsed)
            if mem is not None:
                memory[name].append(mem)
    n_params = sum(p.numel() for p in ours_models[0].parameters())
    return {
        "config": config,
        "wm_params": n_params,
        **{f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()},
        **{f"{k}_times_ms": [round(1e3 * x, 1) for x in v] for k, v in times.items()},
        # warm-up included: with a VmHWM reset it is measured like the others
        **{f"{k}_mem_mib": max(v) if v else None for k, v in memory.items()},
    }


def format_table(rows: list[dict]) -> str:
    mlp = next((r for r in rows if r["config"] == "mlp"), None)
    lines = [
        "| config | WM params | ours (ms/iter) | plain (ms/iter) | ours / plain | "
        "peak mem ours (MiB) | peak mem plain (MiB) | mem vs MLP (ours) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rel = (
            f"{r['ours_mem_mib'] / mlp['ours_mem_mib']:.2f}x"
            if mlp and mlp["ours_mem_mib"] and r["ours_mem_mib"] is not None
            else "n/a"
        )
        mem = [
            f"{r[k]:,.0f}" if r[k] is not None else "n/a" for k in ("ours_mem_mib", "plain_mem_mib")
        ]
        lines.append(
            f"| {r['config']} | {r['wm_params']:,} | {r['ours_ms']:,.0f} | {r['plain_ms']:,.0f} | "
            f"{r['ours_ms'] / r['plain_ms']:.3f} | {mem[0]} | {mem[1]} | {rel} |"
        )
    return "\n".join(lines)


def targets_report(rows: list[dict]) -> str:
    out = []
    worst = max(rows, key=lambda r: r["ours_ms"] / r["plain_ms"])
    ratio = worst["ours_ms"] / worst["plain_ms"]
    met = "met" if ratio <= 1.10 else "NOT met"
    out.append(f"- time target (ours <= 1.10x plain): {met}; worst {ratio:.3f} ({worst['config']})")
    by = {r["config"]: r for r in rows}
    for config in ("flow-heun-K4", "flow-heun-K4-ckpt"):
        target = f"- memory target ({config} <= 2x MLP)"
        if "mlp" in by and config in by and by["mlp"]["ours_mem_mib"]:
            rel = by[config]["ours_mem_mib"] / by["mlp"]["ours_mem_mib"]
            out.append(f"{target}: {'met' if rel <= 2.0 else 'NOT met'}; {rel:.2f}x")
        else:
            out.append(f"{target}: not measured (needs both configs)")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--size", default="5M", choices=list(SIZES))
    parser.add_argument("--quick", action="store_true", help="small size, 2 repeats")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        result = run_worker(args.worker, args.size, args.device, args.threads, args.repeats)
        print("RESULT " + json.dumps(result), flush=True)
        return
    if args.quick:
        args.size, args.repeats = "small", min(args.repeats, 2)
    size = SIZES[args.size]
    print(
        f"size {args.size} ({size}), schedule {SCHEDULE}, device {args.device}, "
        f"threads {args.threads}, repeats {args.repeats}, torch {torch.__version__}",
        flush=True,
    )
    rows = []
    for config in args.configs:
        cmd = [
            sys.executable, __file__, "--worker", config, "--size", args.size,
            "--device", args.device, "--threads", str(args.threads),
            "--repeats", str(args.repeats),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(f"{config}: worker failed (rc {proc.returncode})\n{proc.stderr[-3000:]}")
            continue
        row = json.loads(lines[-1][len("RESULT ") :])
        rows.append(row)
        print(
            f"{config}: ours {row['ours_times_ms']} ms, plain {row['plain_times_ms']} ms, "
            f"mem ours {row['ours_mem_mib']} MiB, plain {row['plain_mem_mib']} MiB",
            flush=True,
        )
    if not rows:
        sys.exit(1)
    print()
    print(format_table(rows))
    print()
    print(targets_report(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
