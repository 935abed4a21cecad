"""The resume contract of a training run: what a checkpoint holds, how a rerun in the same run
directory restores it, and which config changes a resume accepts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from torchrl_flowmbpo.trainers.checkpoint import (
    find_latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

__all__ = ["RESUMABLE_CHANGES", "RunCheckpointer", "config_changes", "restore", "run_state"]

#: Config keys (or key prefixes) a rerun may change when it resumes a run: how and how long it
#: runs, not what an update computes. Raising ``collector.total_frames`` extends a run.
RESUMABLE_CHANGES = ("threads", "device", "logger", "checkpoint", "collector.total_frames")

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

    Examples:
        >>> saved = {"seed": 0, "threads": 1, "algo": {"gamma": 0.99}}
        >>> config_changes(saved, {"seed": 1, "threads": 2, "algo": {"gamma": 0.99}})
        {'seed': (0, 1)}
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


class RunCheckpointer:
    """A run's checkpoints, ``<directory>/checkpoint_<counter>.pt``: save, and resume the latest.

    Args:
        directory: where the checkpoints are written (``<run dir>/checkpoints``).
        cfg: the run's config (stored resolved; a resume compares it with the checkpoint's).
        modules: the modules whose state dicts are saved, by name.
        optimizers: the optimisers, by name.

    Keyword Args:
        counters: the run's counters (updated in place on a resume).
        history: the learning curve's points (replaced in place on a resume).
        specs: the constructor specs stored to rebuild the networks.
        schedulers: the LR schedulers, by name.
        before_save: called before each save (e.g. a dataset recorder's commit, so the dataset
            and the run resume from the same frame).
        counter: the counter that names the files.
        may_change: config keys a resume may change (:func:`restore`).
    """

    def __init__(
        self,
        directory: Path,
        cfg: DictConfig,
        modules: Mapping[str, torch.nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        *,
        counters: dict[str, Any],
        history: dict[str, Any],
        specs: dict[str, Any],
        schedulers: Mapping[str, Any] | None = None,
        before_save: Callable[[], None] | None = None,
        counter: str = "iteration",
        may_change: tuple[str, ...] = RESUMABLE_CHANGES,
    ) -> None:
        self.directory, self.cfg = Path(directory), cfg
        self.modules, self.optimizers, self.schedulers = modules, optimizers, schedulers
        self.counters, self.history, self.specs = counters, history, specs
        self.before_save, self.counter, self.may_change = before_save, counter, may_change

    def resume(self) -> Path | None:
        """Restores the latest checkpoint, if any, into the run's objects; returns its path.

        Raises:
            ValueError: if the run's config differs from the checkpoint's (:func:`restore`).
        """
        latest = find_latest_checkpoint(self.directory)
        if latest is None:
            return None
        state = restore(
            latest,
            self.modules,
            self.optimizers,
            self.schedulers,
            config=self.cfg,
            may_change=self.may_change,
        )
        self.counters.update(state["counters"])
        self.history.clear()
        self.history.update(state["history"])
        return latest

    def save(self) -> Path:
        """Writes the run's state to ``checkpoint_<counter>.pt``; returns its path."""
        if self.before_save is not None:
            self.before_save()
        state = run_state(
            self.cfg,
            self.modules,
            self.optimizers,
            counters=self.counters,
            history=self.history,
            specs=self.specs,
            schedulers=self.schedulers,
        )
        name = f"checkpoint_{self.counters[self.counter]}.pt"
        return save_checkpoint(state, self.directory / name)
