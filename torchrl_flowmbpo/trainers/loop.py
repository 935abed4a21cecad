"""What PWM's, SHAC's and SAC's loops share: hooks, logging at the run's frame count, the closing
evaluation and the final checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torchrl_flowmbpo.trainers.evaluation import Evaluator, eval_metrics
from torchrl_flowmbpo.trainers.hooks import HookedLoop
from torchrl_flowmbpo.trainers.logs import RunClock
from torchrl_flowmbpo.trainers.run_checkpointer import RunCheckpointer
from torchrl_flowmbpo.trainers.run_guard import RunGuard
from torchrl_flowmbpo.trainers.stopping import StopSignals

__all__ = ["TrainingLoop"]


class TrainingLoop(HookedLoop):
    """A hooked training loop with the run's counters, learning curve, evaluation and logger.

    Subclasses implement :meth:`train`, set :attr:`clock` when it starts and keep
    :attr:`eval_stats` at the session's last evaluation; :meth:`run` runs the whole session.

    Args:
        evaluator: the deterministic evaluation.
        checkpointer: the run's checkpoints.

    Keyword Args:
        counters: the run's counters (``frames`` among them; a resume's).
        history: the learning curve's ``train/return`` and ``eval/return`` points.
        logger: a TorchRL logger (None: none).
    """

    def __init__(
        self,
        evaluator: Evaluator,
        checkpointer: RunCheckpointer,
        *,
        counters: dict[str, Any],
        history: dict[str, list[list[float]]],
        logger=None,
    ) -> None:
        super().__init__()
        self.evaluate, self.checkpointer, self.logger = evaluator, checkpointer, logger
        self.counters, self.history = counters, history
        self.eval_stats: dict[str, float] = {}
        self.clock: RunClock | None = None

    def train(self, guard: RunGuard) -> None:
        """Runs the loop (each subclass's), checkpointing and stopping through ``guard``."""
        raise NotImplementedError

    def run(self, stop: StopSignals) -> tuple[dict[str, float], Path]:
        """:meth:`train` under a :class:`RunGuard` of ``stop``, then :meth:`final_evaluation`
        and :meth:`save`; returns the evaluation's statistics and the final checkpoint's path.

        Raises:
            RunStopped: the run stopped early (a checkpoint was written if it could be).
        """
        guard = RunGuard(self.checkpointer, stop)
        self.train(guard)
        eval_stats = self.final_evaluation()
        return eval_stats, self.save(guard)

    def log(self, metrics: Mapping[str, float]) -> None:
        """Logs every metric at the run's frame count."""
        if self.logger is not None:
            for name, value in metrics.items():
                self.logger.log_scalar(name, value, step=self.counters["frames"])

    def final_evaluation(self) -> dict[str, float]:
        """The run's closing evaluation, logged and added to the learning curve unless the
        curve already ends at this frame (then it is only recomputed if this session has not
        evaluated: a resumed run never logs a frame twice)."""
        frames = self.counters["frames"]
        evaluations = self.history["eval/return"]
        done = bool(evaluations) and evaluations[-1][0] == frames
        if not (done and self.eval_stats):
            self.eval_stats = self.evaluate()
        if not done:
            evaluations.append([frames, self.eval_stats["return_mean"]])
            self.log(eval_metrics(self.eval_stats))
        return self.eval_stats

    def save(self, guard: RunGuard) -> Path:
        """Writes the run's final checkpoint (marked finished); returns the path."""
        if self.clock is not None:
            self.clock.tick()
        return guard.save(finished=True)
