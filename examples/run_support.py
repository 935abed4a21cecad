"""Run bookkeeping shared by the training scripts (pwm_flow.py, sac_baseline.py): episode metrics,
resume, checkpoint contents, the periodic evaluation, the closing summary, what a run's outputs
call its task, and a quiet console (no warnings a user cannot act on)."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase

from torchrl_flowmbpo.recipes import evaluate_policy, find_forward_velocity_index, load_checkpoint

__all__ = [
    "REFERENCES_CSV",
    "RESUMABLE_CHANGES",
    "TASK_VARIANTS",
    "Evaluator",
    "config_changes",
    "episode_metrics",
    "eval_metrics",
    "format_return",
    "init_warp_quietly",
    "interrupted",
    "log_to_file",
    "plain_torchrl_console",
    "print_summary",
    "report",
    "restore",
    "run_state",
    "task_label",
    "task_references",
]

_LOG = logging.getLogger("torchrl_flowmbpo.run")

#: Tasks named by the config rather than by the simulator: ``label: (task, keyword arguments
#: that make it)``. ``env=cartpole_balance`` builds the ``cartpole`` task with ``start_angle=0``.
TASK_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "cartpole_balance": ("cartpole", {"start_angle": 0.0}),
}
#: Reference returns (zero action, uniform random actions, scripted controllers) per task and
#: keyword arguments, one full episode per world, written by
#: ``python benchmarks/task_references.py --tasks cartpole --num-envs 32 --seed 0 --csv F`` (the
#: swing-up) and ``... --num-envs 64 --seed 0 --kwargs '{"start_angle": 0.0}' --csv F`` (balance).
REFERENCES_CSV = Path(__file__).resolve().parents[1] / "docs" / "data" / "task_references.csv"


def task_label(name: str, kwargs: Mapping[str, Any] | None = None) -> str:
    """The task as configured: ``"cartpole_balance"`` for the cartpole started upright, else
    the task name (``"cartpole"`` is the swing-up), as run folders, logs and evaluation rows
    name it."""
    kwargs = dict(kwargs or {})
    for label, (task, defining) in TASK_VARIANTS.items():
        if name == task and all(k in kwargs and kwargs[k] == v for k, v in defining.items()):
            return label
    return name


def task_references(
    name: str, kwargs: Mapping[str, Any] | None = None, path: Path = REFERENCES_CSV
) -> dict[str, float]:
    """``{behaviour: mean return}`` measured on exactly this task and keyword arguments (none
    when ``path`` has no such rows, e.g. for a changed ``episode_length``)."""
    if not path.is_file():
        return {}
    wanted = {k: float(v) if isinstance(v, int | float) else v for k, v in (kwargs or {}).items()}
    out = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            stored = {
                k: float(v) if isinstance(v, int | float) else v
                for k, v in json.loads(row["kwargs"]).items()
            }
            if row["task"] == name and stored == wanted:
                out[row["behaviour"]] = float(row["return_mean"])
    return out


def format_return(stats: Mapping[str, float]) -> str:
    """``"return -451.0 ± 12.3 (s.e.)"``: the mean with its standard error, so that an
    8-episode number does not look as certain as a 100-episode one."""
    n = int(stats["episodes"])
    if n < 2:
        return f"return {stats['return_mean']:.1f} (1 episode: no s.e.)"
    # return_std is the population std: the standard error is std / sqrt(n - 1).
    return (
        f"return {stats['return_mean']:.1f} ± {stats['return_std'] / math.sqrt(n - 1):.1f} (s.e.)"
    )


def log_to_file(message: str) -> None:
    """Writes ``message`` to the run's log files only (Hydra's ``<job>.log``), not the console."""
    record = _LOG.makeRecord(_LOG.name, logging.INFO, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def report(message: str) -> None:
    """Prints ``message`` and writes it to the run's log file too."""
    print(message, flush=True)
    log_to_file(message)


def plain_torchrl_console() -> None:
    """Drops the colour codes of TorchRL's console log lines when the output is not a terminal
    (a redirected log would hold raw escape sequences)."""
    if sys.stdout.isatty():
        return
    plain = logging.Formatter("%(asctime)s [%(name)s][%(levelname)s] %(message)s")
    for handler in logging.getLogger("torchrl").handlers:
        handler.setFormatter(plain)


def init_warp_quietly(device: str) -> None:
    """Initialises Warp without its "Could not find or load the NVIDIA CUDA driver" line on a CPU
    run, where no CUDA is wanted. Warp's native library prints it to file descriptor 2 while it
    initialises, so stderr is pointed at /dev/null for that call only; a failure still raises.
    On a CUDA run nothing is hidden."""
    import warp as wp

    if not str(device).startswith("cpu"):
        wp.init()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            wp.init()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def interrupted(script: str) -> Iterator[None]:
    """Turns Ctrl-C into a one-line message and exit status 130 instead of a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"\n{script}: interrupted (Ctrl-C).", file=sys.stderr)
        sys.exit(130)


#: Config keys (or key prefixes) a rerun may change when it resumes a run: how and how long it
#: runs, not what an update computes. Raising ``collector.total_frames`` extends a run.
RESUMABLE_CHANGES = ("threads", "device", "logger", "checkpoint", "collector.total_frames")


def episode_metrics(data: TensorDictBase) -> dict[str, float]:
    """``train/*`` statistics of the episodes that ended in a collected batch (raw rewards)."""
    done = data.get(("next", "done")).squeeze(-1)
    if not done.any():
        return {}
    returns = data.get(("next", "episode_reward"))[done]
    lengths = data.get(("next", "step_count"))[done].float()
    return {
        "train/return": float(returns.mean()),
        "train/episode_length": float(lengths.mean()),
        "train/return_per_step": float(returns.sum() / lengths.sum()),
        "train/episodes": float(done.sum()),
    }


#: Mappings compared as one value: a task's keyword arguments are the user's, never a library
#: default, so one added or removed changes the task.
WHOLE_MAPPINGS = ("env.kwargs",)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and path not in WHOLE_MAPPINGS:
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = dict(value) if isinstance(value, Mapping) else value
    return out


def config_changes(
    saved: Mapping[str, Any],
    current: Mapping[str, Any],
    may_change: tuple[str, ...] = RESUMABLE_CHANGES,
) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (saved, current)}`` for the keys of both configs whose values differ.

    Keys under ``may_change`` are left out, and so are keys only one config has (options added
    or removed between versions of the library); ``env.kwargs`` is compared as a whole.
    """
    old, new = _flatten(saved), _flatten(current)
    return {
        key: (old[key], new[key])
        for key in sorted(old.keys() & new.keys())
        if old[key] != new[key] and not any(key == k or key.startswith(f"{k}.") for k in may_change)
    }


def restore(
    path: Path,
    modules: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    schedulers: Mapping[str, Any] | None = None,
    *,
    config: DictConfig | None = None,
    may_change: tuple[str, ...] = RESUMABLE_CHANGES,
) -> dict[str, Any]:
    """Loads a checkpoint into the run's objects and the torch RNG; returns the whole state.

    Raises:
        ValueError: if ``config`` (the rerun's) differs from the checkpoint's outside
            ``may_change`` (default :data:`RESUMABLE_CHANGES`): one run would mix two
            configurations.
    """
    # A large model's checkpoint (optimiser states included) takes seconds to read.
    print(f"Loading {path} ({path.stat().st_size / 2**20:.1f} MB) ...", flush=True)
    state = load_checkpoint(path, required=("modules", "optimizers", "counters"))
    if config is not None and "config" in state:
        resolved = OmegaConf.to_container(config, resolve=True)
        changes = config_changes(state["config"], resolved, may_change)
        if changes:
            listed = "; ".join(
                f"{k}: {old!r} there, {new!r} now" for k, (old, new) in changes.items()
            )
            raise ValueError(
                f"{path} was written with another config ({listed}). Resuming would mix two "
                "configurations in one run: rerun with the checkpoint's values or use a new "
                f"hydra.run.dir. Keys a resume may change: {', '.join(may_change)}."
            )
    for name, module in modules.items():
        module.load_state_dict(state["modules"][name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    for name, scheduler in (schedulers or {}).items():
        scheduler.load_state_dict(state["schedulers"][name])
    torch.set_rng_state(state["rng"]["torch"])
    return state


def run_state(
    cfg: DictConfig,
    modules: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    *,
    counters: dict[str, Any],
    history: dict[str, list[list[float]]],
    specs: dict[str, Any],
    schedulers: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a checkpoint holds: tensors and plain containers only (weights_only loads)."""
    state = {
        "modules": {name: module.state_dict() for name, module in modules.items()},
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "counters": dict(counters),
        "history": history,
        "rng": {"torch": torch.get_rng_state()},
        "config": OmegaConf.to_container(cfg, resolve=True),
        "specs": specs,
        "variant": cfg.variant,
        "seed": cfg.seed,
    }
    if schedulers is not None:
        state["schedulers"] = {name: sch.state_dict() for name, sch in schedulers.items()}
    return state


class Evaluator:
    """Deterministic evaluation on a separate env seeded ``seed + 1000``, built on first use.

    The env is reseeded before every evaluation, so every evaluation (and ``evaluate.py``) starts
    from the same states. Tasks with a ``forward_velocity_index`` (the locomotion tasks) also get
    the mean forward velocity, ``forward_velocity``.

    Args:
        make_env: ``make_env(num_envs, seed) -> env`` building the task with its trackers.
        cfg: the run config (``seed``, ``eval.episodes``, ``eval.num_envs``).
        policy: the closed-loop policy on real observations.
    """

    def __init__(self, make_env: Callable[[int, int], Any], cfg: DictConfig, policy) -> None:
        self._make_env, self.policy = make_env, policy
        self.seed, self.episodes = cfg.seed + 1000, cfg.eval.episodes
        self.num_envs = min(cfg.eval.num_envs, cfg.eval.episodes)
        self._env = None

    @property
    def env(self):
        """The evaluation env (built on first use)."""
        if self._env is None:
            self._env = self._make_env(self.num_envs, self.seed)
        return self._env

    def __call__(self) -> dict[str, float]:
        self.env.set_seed(self.seed)
        return evaluate_policy(
            self.env,
            self.policy,
            episodes=self.episodes,
            max_steps_per_episode=self.env.base_env.episode_length,
            forward_velocity_index=find_forward_velocity_index(self.env),
        )


def eval_metrics(eval_stats: dict[str, float]) -> dict[str, float]:
    """The headline ``eval/*`` metrics of an evaluation: return, episode length and, for a task
    with one (the locomotion tasks), the mean forward velocity."""
    metrics = {
        "eval/return": eval_stats["return_mean"],
        "eval/episode_length": eval_stats["length_mean"],
    }
    if "forward_velocity" in eval_stats:
        metrics["eval/forward_velocity"] = eval_stats["forward_velocity"]
    return metrics


def print_summary(eval_stats: dict[str, float], checkpoint: Path, curve: Path) -> None:
    """The closing lines (printed and written to the run log): evaluation result with its
    standard error, checkpoint and learning-curve paths."""
    velocity = eval_stats.get("forward_velocity")
    report(
        f"Evaluation ({int(eval_stats['episodes'])} episodes, deterministic): "
        f"{format_return(eval_stats)}, std {eval_stats['return_std']:.1f}, "
        f"length {eval_stats['length_mean']:.0f}, "
        f"return/step {eval_stats['return_per_step']:.2f}"
        + ("" if velocity is None else f", forward velocity {velocity:.2f} m/s")
    )
    report(f"Checkpoint: {checkpoint}")
    report(f"Learning curve: {curve}")
