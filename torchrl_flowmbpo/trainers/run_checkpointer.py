"""A training run's checkpoints and resume: what is saved, when, and how a rerun continues.

:class:`RunCheckpointer` binds a loop's live objects (modules, optimisers, LR schedules,
counters, learning curve, replay buffer, RNGs) to :class:`~torchrl_flowmbpo.trainers.
checkpointing.RunCheckpoints`. A rerun in the same run directory resumes from the newest sound
checkpoint (bad ones are set aside), refuses a config that differs outside the keys a resume may
change, and knows when the run it resumes had already finished.

What a resume restores: every weight, optimiser and LR-schedule state, the counters and the
learning curve, the Python/NumPy/torch RNGs and the environments' generators, and with the
replay buffer, when its storage fits ``max_buffer_mb``, the collector's state between batches:
its counters, the step it carries (observations, done flags, ``StepCounter``/``RewardSum``
trackers, trajectory ids), the simulator's state (joint state, applied forces, MuJoCo-Warp's
warm-start buffers, episode step counters) and its transforms' states. The episodes in progress
at the checkpoint go on where they were, and a resumed run ends bit-identical to the same run
uninterrupted (same device, tests/examples/test_exact_resume.py). What it cannot: a replay buffer
above the limit (it is not saved, nor is the collector's state: the resumed run restarts the
episodes from a reset, refills the buffer with ``init_random_frames`` of its budget and trains on
fresher data); a checkpoint of an earlier version restarts the episodes from a reset too.
A loop whose data is not a collector's (SHAC's rollouts through the differentiable simulator)
saves the state it carries from one iteration to the next with :meth:`RunCheckpointer.bind_state`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from torchrl_flowmbpo.data.collector_state import collector_state, load_collector_state
from torchrl_flowmbpo.trainers.buffer_state import compact_state, load_compact_state
from torchrl_flowmbpo.trainers.checkpointing import (
    CheckpointSchedule,
    RunCheckpoints,
    capture_rng,
    restore_rng,
    state_nbytes,
)
from torchrl_flowmbpo.trainers.logs import drop_logged_after, report
from torchrl_flowmbpo.trainers.resume import RESUMABLE_CHANGES, config_changes

__all__ = ["ConfigChangedError", "RunCheckpointer", "env_generators"]


def env_generators(env: Any) -> dict[str, torch.Generator]:
    """``{"env": generator}`` of a task env (through its transforms), or ``{}`` if it has none.

    The locomotion tasks draw their reset noise from a generator of their own, which a resume
    restores with the process's RNGs.
    """
    while not hasattr(env, "_rng") and hasattr(env, "base_env"):
        env = env.base_env
    generator = getattr(env, "_rng", None)
    return {"env": generator} if isinstance(generator, torch.Generator) else {}


class ConfigChangedError(ValueError):
    """A rerun's config differs from its checkpoint's in keys a resume may not change."""


class RunCheckpointer:
    """A run's checkpoints in ``directory``: save on schedule, resume the newest sound one.

    Args:
        directory: where the checkpoints are written (``<run dir>/checkpoints``).
        cfg: the run's config (stored resolved in the manifest; a resume compares it).
        modules: the modules whose state dicts are saved, by name.
        optimizers: the optimisers, by name.

    Keyword Args:
        counters: the run's counters (updated in place on a resume).
        history: the learning curve's points (replaced in place on a resume).
        specs: the constructor specs stored to rebuild the networks.
        schedulers: the LR schedulers, by name.
        replay_buffer: saved with each checkpoint when its written rows take at most
            ``cfg.checkpoint.max_buffer_mb`` (None: never saved).
        generators: RNGs besides the process's (e.g. the environments'), by name.
        before_save: called before each save (e.g. a dataset recorder's commit).
        counter: the counter that numbers the checkpoints.
        may_change: config keys a resume may change.
        warn: where one-line warnings go.

    The ``checkpoint`` keys of ``cfg`` set the schedule (``interval`` iterations or
    ``every_minutes``), the rotation (``keep_last`` besides the best by evaluation return) and
    the largest replay buffer saved (``max_buffer_mb``).

    Examples:
        >>> import tempfile
        >>> from omegaconf import OmegaConf
        >>> cfg = OmegaConf.create({"seed": 0, "variant": "demo", "checkpoint": {"interval": 2,
        ...     "every_minutes": 5.0, "keep_last": 3, "max_buffer_mb": 64.0}})
        >>> run_dir, net = Path(tempfile.mkdtemp()), torch.nn.Linear(2, 1)
        >>> def checkpointer(counters):
        ...     return RunCheckpointer(run_dir, cfg, {"net": net}, {}, counters=counters,
        ...                            history={}, specs={})
        >>> first = checkpointer({"iteration": 2})
        >>> first.due(), first.save().name
        (True, 'checkpoint-000000000002.torchrl')
        >>> resumed = checkpointer({"iteration": 0})
        >>> resumed.resume().name, resumed.counters
        ('checkpoint-000000000002.torchrl', {'iteration': 2})
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
        replay_buffer: Any = None,
        generators: Mapping[str, torch.Generator] | None = None,
        before_save: Callable[[], None] | None = None,
        counter: str = "iteration",
        may_change: tuple[str, ...] = RESUMABLE_CHANGES,
        warn: Callable[[str], None] = report,
    ) -> None:
        self.cfg, self.modules, self.optimizers = cfg, modules, optimizers
        self.schedulers = schedulers or {}
        self.counters, self.history, self.specs = counters, history, specs
        self.replay_buffer, self.generators = replay_buffer, generators or {}
        self.before_save, self.counter, self.may_change = before_save, counter, may_change
        options = cfg.checkpoint
        self.max_buffer_bytes = options.max_buffer_mb * 2**20
        self.warn = warn
        self.checkpoints = RunCheckpoints(directory, keep_last=options.keep_last, warn=warn)
        self.schedule = CheckpointSchedule(options.interval, options.every_minutes)
        #: The last checkpoint written or resumed from (what a failed run names).
        self.last_path: Path | None = None
        #: Whether the checkpoint resumed from was written at the end of its run.
        self.finished = False
        self._rng_state: Mapping[str, Any] | None = None
        self._collector_state: Mapping[str, Any] | None = None
        self.collector: Any = None
        self._loop_captures: dict[str, Callable[[], Mapping[str, Any]]] = {}
        self._loop_states: Mapping[str, Any] = {}
        self._buffer_note_shown = False

    def _run_state(self) -> dict[str, Any]:
        return {
            "modules": {name: module.state_dict() for name, module in self.modules.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "counters": dict(self.counters),
            "history": self.history,
            "specs": self.specs,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "variant": self.cfg.variant,
            "seed": self.cfg.seed,
        }

    def _buffer_state(self) -> dict[str, Any] | None:
        if self.replay_buffer is None or len(self.replay_buffer) == 0:
            return None
        state = compact_state(self.replay_buffer)
        size = state_nbytes(state)
        if size <= self.max_buffer_bytes:
            return state
        if not self._buffer_note_shown:
            self._buffer_note_shown = True
            self.warn(
                f"Note: the replay buffer ({size / 2**20:.0f} MiB) exceeds "
                f"checkpoint.max_buffer_mb={self.max_buffer_bytes / 2**20:g}; it is not saved, "
                "so a resume refills it with init_random_frames of fresh data."
            )
        return None

    def evaluation_now(self) -> float | None:
        """The return of an evaluation of the current weights (the learning curve's last
        ``eval/return`` point is at the current frame), else None."""
        evaluations = self.history.get("eval/return") or []
        if evaluations and evaluations[-1][0] == self.counters.get("frames"):
            return float(evaluations[-1][1])
        return None

    def due(self) -> bool:
        """Whether a checkpoint is due: by the schedule (iterations or wall-clock), or because
        the current weights were just evaluated (the rotation keeps the best evaluated ones)."""
        return self.schedule.due(self.counters[self.counter]) or self.evaluation_now() is not None

    def save(self, *, finished: bool = False) -> Path:
        """Writes the run's state as the checkpoint of the current counter; returns its path.

        The manifest records the evaluation return of these weights, if they were evaluated
        (:meth:`evaluation_now`): the rotation keeps the best of those.

        Args:
            finished: whether the run has done all its frames (a rerun then does nothing).

        Raises:
            NonFiniteStateError: a weight or optimiser state is not finite; nothing is
                written and :attr:`last_path` still names the last good checkpoint.
        """
        if self.before_save is not None:
            self.before_save()
        states = {"run": self._run_state(), "rng": capture_rng(self.generators)}
        buffer = self._buffer_state()
        if buffer is not None:
            states["replay_buffer"] = buffer
            collector = self._collector_snapshot()
            if collector is not None:
                states["collector"] = collector
        if self._loop_captures:
            states["loop"] = {name: capture() for name, capture in self._loop_captures.items()}
        metadata = {
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "counters": dict(self.counters),
            "eval_return": self.evaluation_now(),
            "finished": finished,
        }
        step = int(self.counters[self.counter])
        self.last_path = self.checkpoints.save(states, step=step, metadata=metadata)
        self.schedule.saved()
        return self.last_path

    def _check_config(self, path: Path, config: Mapping[str, Any]) -> None:
        resolved = OmegaConf.to_container(self.cfg, resolve=True)
        changes = config_changes(config, resolved, self.may_change)
        if changes:
            listed = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in changes.items())
            raise ConfigChangedError(
                f"{path} was written with another config ({listed}). Resuming would mix two "
                "configurations in one run: rerun with the checkpoint's values or use a new "
                f"hydra.run.dir. Keys a resume may change: {', '.join(self.may_change)}."
            )

    def resume(self) -> Path | None:
        """Restores the newest sound checkpoint, if any, into the run's objects.

        Staging files of killed writes are removed first (call it while holding the run's
        lock). The RNG states are kept for :meth:`restore_rng`, which the loop calls right
        before it starts, after every object that draws random numbers while it is built.

        Returns:
            The checkpoint's path, or None for a new run.

        Raises:
            ConfigChangedError: the run's config differs from the checkpoint's (keys named).
            LegacyCheckpointError: the directory holds only checkpoints of the old format.
        """
        self.checkpoints.remove_leftovers()
        found = self.checkpoints.load_newest_valid()
        if found is None:
            return None
        path, states, manifest = found
        self._check_config(path, states["run"].get("config", manifest["metadata"]["config"]))
        run = states["run"]
        for name, module in self.modules.items():
            module.load_state_dict(run["modules"][name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(run["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(run["schedulers"][name])
        self.counters.update(run["counters"])
        self.history.clear()
        self.history.update(run["history"])
        if self.replay_buffer is not None and "replay_buffer" in states:
            load_compact_state(self.replay_buffer, states["replay_buffer"])
            self._collector_state = states.get("collector")
        self._loop_states = states.get("loop", {})
        self._rng_state = states.get("rng")
        self.finished = bool(manifest["metadata"].get("finished", False))
        self.last_path = path
        return path

    def resume_run(self, log_dir: Path) -> list[str]:
        """:meth:`resume`, then drops the rows logged after the checkpoint under ``log_dir``
        (all of them for a new run: those of a run killed before its first checkpoint), which
        this run logs again; returns notes for the run log.
        """
        notes = []
        latest = self.resume()
        if latest is not None:
            notes.append(f"Resumed from {latest} ({self.counter} {self.counters[self.counter]}).")
        dropped = drop_logged_after(log_dir, self.counters.get("frames", 0))
        if dropped:
            notes.append(
                f"Dropped {dropped} logged rows after frame {self.counters.get('frames', 0)}."
            )
        return notes

    def finished_run(self, key: str, total: int) -> bool:
        """Whether the checkpoint resumed from ended its run and ``counters[key]`` reached
        ``total`` (a rerun then does nothing; a larger ``total`` extends the run)."""
        return self.finished and self.counters[key] >= total

    @property
    def restored_buffer(self) -> bool:
        """Whether the resumed checkpoint refilled the replay buffer."""
        return self.replay_buffer is not None and len(self.replay_buffer) > 0

    def bind_collector(self, collector: Any) -> None:
        """Registers the run's collector (built after :meth:`resume`, from its counters).

        Its state between batches (:func:`~torchrl_flowmbpo.data.collector_state`: frame,
        iteration and trajectory counters, the step it carries into the next batch, the
        simulator's state and the env's transforms) is saved with a saved replay buffer, and
        restored here from the checkpoint resumed from, so the episodes in progress go on: build
        the collector for the whole run (``total_frames`` and ``init_random_frames`` of the
        config), not for what is left, on an env built like the saved one's. A checkpoint of an
        earlier version holds the counters only: the episodes then restart from the reset the
        collector was built with.
        """
        self.collector = collector
        if self._collector_state is not None:
            load_collector_state(collector, self._collector_state)

    def _collector_snapshot(self) -> dict[str, Any] | None:
        if self.collector is None:
            return self._collector_state
        return collector_state(self.collector)

    def unbind_collector(self) -> None:
        """Keeps the collector's last state for later checkpoints; call before its shutdown."""
        if self.collector is not None:
            self._collector_state = self._collector_snapshot()
            self.collector = None

    def bind_state(
        self,
        name: str,
        capture: Callable[[], Mapping[str, Any]],
        load: Callable[[Mapping[str, Any]], None],
    ) -> bool:
        """Registers a state the loop carries between iterations besides its modules (e.g. the
        episodes in progress of a loop without a collector): every checkpoint saves
        ``capture()`` as ``name``, and the one resumed from, if it holds ``name``, is put back
        now through ``load``.

        Args:
            name: the state's name in the checkpoints.
            capture: returns the state (tensors, TensorDicts and numbers only: checkpoints are
                read weights-only), called at each save.
            load: puts a captured state back (TensorDicts come back as nested dicts).

        Returns:
            Whether a saved state was loaded (False for a new run, or a checkpoint of an
            earlier version or saved without it).
        """
        self._loop_captures[name] = capture
        if name not in self._loop_states:
            return False
        load(self._loop_states[name])
        return True

    def restore_rng(self) -> None:
        """Puts back the RNG states of the checkpoint resumed from (nothing for a new run)."""
        if self._rng_state is not None:
            restore_rng(self._rng_state, self.generators)
