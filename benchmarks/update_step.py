"""Time and peak memory of one PWM iteration, through TorchRL and through a plain-PyTorch loop.

One iteration is what ``examples/pwm_flow.py`` runs per training iteration:
one actor step on ``actor_batch`` imagined starts, ``critic_iterations x critic_minibatches``
critic steps on its rollout, then ``wm_steps`` world-model steps on ``wm_batch`` replay slices
of ``H`` transitions (rows, as the pipeline samples them). Data are synthetic (Ant dims: obs 37,
act 8), generated before timing.

Two implementations run side by side in one process per configuration:

* ``ours``: :class:`~torchrl_flowmbpo.trainers.PWMUpdater` with ``WorldModelLoss``,
  ``PWMActorLoss`` (imagination through ``ImaginedLatentEnv.imagine``) and ``PWMValueLoss``
  (TorchRL's ``td_lambda_return_estimate``; ``functional=False``, as the pipeline builds it
  without a target critic), on TensorDict batches;
* ``plain``: :class:`plain_pwm.PlainIteration` (``benchmarks/plain_pwm.py``), the same losses
  written by hand on plain tensors (:func:`plain_pwm.plain_world_model_loss`,
  :func:`plain_pwm.plain_actor_loss`, :func:`plain_pwm.plain_td_lambda`,
  :func:`plain_pwm.plain_critic_loss`), calling the same plain ``nn.Module`` s directly:
  ``world_model.encode/next/reward/termination_logit`` (``velocity`` for flow matching), the
  actor's ``policy_net`` and the critic's ``net``.

Both start from identical copies of the same networks and optimiser settings, so only the wrapper
overhead differs. The ``-ckpt`` configurations build the flow world model with
``grad_checkpoint=True``; both paths then checkpoint its ODE solve (both call its ``next``).
Timings: median of ``--repeats`` iterations per path after one warm-up iteration each, the two paths
alternating; elapsed time, or with ``--clock cpu`` the process's CPU time (on a shared CPU machine
other jobs stretch elapsed time, not the work). Memory: peak RSS growth during an iteration (CPU:
``VmHWM`` reset through ``/proc/self/clear_refs`` after ``malloc_trim``, falling back to the
``ru_maxrss`` growth of the first iteration; CUDA: ``max_memory_allocated`` growth), max over the
timed iterations. Adam state is allocated before any measurement. Each configuration runs in a
fresh subprocess.

Usage:
    python benchmarks/update_step.py --quick                     # smoke run, small size
    python benchmarks/update_step.py --size small --clock cpu    # wrapper overhead on a busy CPU
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
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from plain_pwm import (
    GAMMA,
    GRAD_CLIPS,
    LMBDA,
    SCHEDULE,
    WM_RHO,
    PlainIteration,
    plain_wm_tensors,
)
from tensordict import TensorDict

from torchrl_flowmbpo.modules.builders import build_actor, build_critic, build_world_model
from torchrl_flowmbpo.objectives import PWMActorLoss, PWMValueLoss, WorldModelLoss
from torchrl_flowmbpo.trainers.updater import PWMUpdater

OBS_DIM, ACTION_DIM = 37, 8  # Ant

SIZES = {
    # the reference "5M" setting (Ant: num_envs 128 actor starts)
    "5M": {"preset": "5M", "horizon": 16, "wm_batch": 256, "actor_batch": 128},
    "small": {"preset": "small", "horizon": 8, "wm_batch": 32, "actor_batch": 32},
}


def _config_specs() -> dict[str, tuple[dict, dict]]:
    specs = {"mlp": ({"type": "mlp"}, {"type": "gaussian"})}
    for integrator in ("euler", "heun", "rk4"):
        for k in (2, 4, 8):
            wm = {"type": "flow", "integrator": integrator, "flow_steps": k}
            specs[f"flow-{integrator}-K{k}"] = (wm, {"type": "gaussian"})
    for k in (2, 4):  # the ODE solve activation-checkpointed (FlowWorldModel grad_checkpoint)
        wm = {"type": "flow", "integrator": "heun", "flow_steps": k, "grad_checkpoint": True}
        specs[f"flow-heun-K{k}-ckpt"] = (wm, {"type": "gaussian"})
    specs["flow-actor"] = ({"type": "mlp"}, {"type": "flow"})
    return specs


CONFIGS = _config_specs()


# --------------------------------------------------------------------------------- TorchRL path


class OursIteration:
    """One PWM iteration through PWMUpdater and the TorchRL losses."""

    def __init__(self, wm, actor, critic, optimizers, data, size) -> None:
        horizon = size["horizon"]
        wm_loss = WorldModelLoss(wm, horizon=horizon, wm_rho=WM_RHO, flow_source="rollout")
        # As torchrl_flowmbpo.trainers.factories.make_losses builds it without a target critic.
        value_loss = PWMValueLoss(critic, gamma=GAMMA, lmbda=LMBDA, functional=False)
        # No entropy bonus: the plain path has none (PWM's loss).
        actor_loss = PWMActorLoss(
            actor, critic, wm, horizon=horizon, gamma=GAMMA, ret_rms=True, entropy_coef=0.0
        )
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
    # PWM's detached actor input and PyTorch's init (the actors' defaults when the timings in
    # docs/benchmarks.md were measured).
    pwm_actor = {"detach_latent": True}
    if actor_spec["type"] == "flow":
        pwm_actor["velocity_init"] = "default"
    actor = build_actor({**pwm_actor, **actor_spec}, wm.latent_dim, ACTION_DIM).to(device)
    critic = build_critic({}, wm.latent_dim).to(device)
    return wm, actor, critic


def make_optimizers(wm, actor, critic) -> dict[str, torch.optim.Optimizer]:
    """As torchrl_flowmbpo.trainers.factories.make_optimizers (LR schedule left out), with Adam
    state allocated."""
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
    """A ``[wm_batch, H]`` replay-style batch of random slices of H transitions."""
    b, t = size["wm_batch"], size["horizon"]
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


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def measure(
    fn: Callable[[], None], device: str, first: bool, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, float | None]:
    """``(seconds on clock, peak memory growth in MiB or None)`` of one call of ``fn``."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = clock()
        fn()
        torch.cuda.synchronize()
        elapsed = clock() - start
        return elapsed, (torch.cuda.max_memory_allocated() - base) / 2**20
    if _reset_peak_rss():
        base = _rss_kib("VmRSS")
        start = clock()
        fn()
        elapsed = clock() - start
        return elapsed, (_rss_kib("VmHWM") - base) / 1024
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = clock()
    fn()
    elapsed = clock() - start
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    return elapsed, grown / 1024 if first else None


def run_worker(
    config: str, size_name: str, device: str, threads: int, repeats: int, clock: str = "wall"
) -> dict:
    """Times both paths of one configuration in this process."""
    torch.set_num_threads(threads)
    size, timer = SIZES[size_name], CLOCKS[clock]
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
        _, mem = measure(fn, device, first=True, clock=timer)
        if mem is not None:
            memory[name].append(mem)
    for r in range(repeats):
        order = ("ours", "plain") if r % 2 == 0 else ("plain", "ours")
        for name in order:
            elapsed, mem = measure(paths[name], device, first=False, clock=timer)
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
    parser.add_argument(
        "--clock",
        default="wall",
        choices=list(CLOCKS),
        help="wall: elapsed time (default); cpu: this process's CPU time, which other jobs on a "
        "shared machine do not inflate (CPU device; with --threads 1 it is the work itself)",
    )
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clock == "cpu" and args.device != "cpu":
        parser.error(f"--clock cpu measures CPU work; it needs --device cpu, got {args.device}")
    if args.worker is not None:
        result = run_worker(
            args.worker, args.size, args.device, args.threads, args.repeats, args.clock
        )
        print("RESULT " + json.dumps(result), flush=True)
        return
    if args.quick:
        args.size, args.repeats = "small", min(args.repeats, 2)
    size = SIZES[args.size]
    print(
        f"size {args.size} ({size}), schedule {SCHEDULE}, device {args.device}, "
        f"threads {args.threads}, repeats {args.repeats}, clock {args.clock}, "
        f"torch {torch.__version__}",
        flush=True,
    )
    rows = []
    for config in args.configs:
        cmd = [
            sys.executable, __file__, "--worker", config, "--size", args.size,
            "--device", args.device, "--threads", str(args.threads),
            "--repeats", str(args.repeats), "--clock", args.clock,
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
