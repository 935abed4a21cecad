"""Subprocess runs of the example scripts, shared by the tests in this folder.

The scripts run as ``sys.executable <script> ...`` in a temporary working directory, with
``threads=1`` (the machine is a shared 2-core CPU). Each training run is tiny: 4 envs, 100-step
episodes, 128 random frames, 2 WM warm-up steps and 8-slice WM batches. Runs are started
concurrently (``Popen``) and awaited when a test needs them; a run shared by several test files
(the four experiment bundles) is trained once per session.

The test files are imported with ``--import-mode=importlib``, so helpers reach them as fixtures.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from torchrl_flowmbpo.data import DatasetRecorder
from torchrl_flowmbpo.modules.builders import build_actor, build_world_model
from torchrl_flowmbpo.trainers.checkpointing import RunCheckpoints
from torchrl_flowmbpo.transforms import RewardNormalization

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT_S = 400

#: Overrides that keep a training run to seconds (added to every run here).
TINY = (
    "collector.init_random_frames=128",
    "algo.wm_warmup_steps=2",
    "algo.wm_batch_slices=8",
    "threads=1",
    "+env.kwargs.episode_length=100",
)
#: The issue's command line (flow_wm), used verbatim; DIR is the run directory.
ISSUE_COMMAND = (
    "env=ant env.num_envs=4 collector.total_frames=512 eval.episodes=2 logger=csv seed=1 "
    "device=cpu experiment=flow_wm hydra.run.dir=DIR"
)
#: Smoke runs of every experiment bundle: 320 frames (4 iterations) with a periodic evaluation at
#: iteration 3 and the final one at 4; flow_wm is the issue's command with heun, K = 4.
BUNDLE_RUNS = {
    "baseline": "experiment=baseline",
    "flow_policy": "experiment=flow_policy",
    "full_flow": "experiment=full_flow",
}
BUNDLE_COMMON = (
    "env=ant env.num_envs=4 collector.total_frames=320 eval.episodes=1 eval.num_envs=1 "
    "eval.interval=3 checkpoint.interval=2 logger=csv seed=1 device=cpu hydra.run.dir=DIR"
)


@dataclass
class ScriptRun:
    """A finished script run: exit status, captured output and its run directory."""

    returncode: int
    stdout: str
    stderr: str
    run_dir: Path

    def check(self) -> ScriptRun:
        assert self.returncode == 0, f"exit {self.returncode}\n{self.stderr[-4000:]}"
        return self


class PendingRun:
    """A started script; ``result()`` waits for it (once)."""

    def __init__(self, script: str, args: list[str], cwd: Path, run_dir: Path):
        cwd.mkdir(parents=True, exist_ok=True)
        self._out, self._err = cwd / "stdout.txt", cwd / "stderr.txt"
        env = dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1")
        with self._out.open("w") as out, self._err.open("w") as err:
            self._proc = subprocess.Popen(
                [sys.executable, str(EXAMPLES / script), *args],
                cwd=cwd,
                stdout=out,
                stderr=err,
                env=env,
            )
        self._run_dir = run_dir
        self._result: ScriptRun | None = None

    def result(self, timeout: float = TIMEOUT_S) -> ScriptRun:
        if self._result is None:
            try:
                code = self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                raise
            self._result = ScriptRun(
                code, self._out.read_text(), self._err.read_text(), self._run_dir
            )
        return self._result


class Scripts:
    """Starts ``examples/<script>`` runs in fresh working directories under ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self._count = 0

    def _workdir(self, name: str) -> Path:
        self._count += 1
        return self.root / f"{self._count:02d}_{name}"

    def start_training(
        self, overrides: str, *, run_dir: Path | None = None, tiny: bool = True
    ) -> PendingRun:
        """``pwm_flow.py`` with ``overrides`` (``DIR`` is replaced by the run dir), plus TINY
        unless ``tiny=False``."""
        cwd = self._workdir("train")
        run_dir = run_dir or cwd / "run"
        args = [*overrides.replace("DIR", str(run_dir)).split(), *(TINY if tiny else ())]
        return PendingRun("pwm_flow.py", args, cwd, run_dir)

    def start_evaluation(self, *args: str | Path) -> PendingRun:
        cwd = self._workdir("evaluate")
        return PendingRun("evaluate.py", [str(a) for a in args], cwd, cwd)


class BundleRuns:
    """The experiment-bundle smoke runs, started on first request and trained once."""

    def __init__(self, scripts: Scripts):
        self._scripts = scripts
        self._pending: dict[str, PendingRun] = {}

    @staticmethod
    def command(bundle: str) -> str:
        if bundle == "flow_wm":
            return f"{ISSUE_COMMAND} world_model.integrator=heun world_model.flow_steps=4"
        return f"{BUNDLE_COMMON} {BUNDLE_RUNS[bundle]}"

    def start(self, *bundles: str) -> None:
        for bundle in bundles:
            if bundle not in self._pending:
                self._pending[bundle] = self._scripts.start_training(self.command(bundle))

    def result(self, bundle: str) -> ScriptRun:
        """The finished run (started now if it was not), whatever its exit status."""
        self.start(bundle)
        return self._pending[bundle].result()

    def get(self, bundle: str) -> ScriptRun:
        """The finished run; fails the calling test if the run failed."""
        return self.result(bundle).check()


@pytest.fixture(scope="session")
def scripts(tmp_path_factory) -> Scripts:
    return Scripts(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="session")
def bundle_runs(scripts) -> BundleRuns:
    return BundleRuns(scripts)


@pytest.fixture(scope="session")
def read_scalars():
    """``read_scalars(path) -> (steps, values)`` of a TorchRL CSVLogger scalar file."""

    def read(path: Path) -> tuple[list[float], list[float]]:
        with path.open(newline="") as f:
            rows = [row for row in csv.reader(f) if row]
        assert rows, f"{path} is empty"
        steps = [float(r[0]) for r in rows]
        values = [float(r[1]) for r in rows]
        assert all(math.isfinite(v) for v in values), f"{path}: non-finite value"
        return steps, values

    return read


#: (observation dim, action dim, task kwargs) of the tasks of the tiny checkpoints.
TASK_SPECS = {
    "cartpole": (5, 1, {"start_angle": 0.0, "reward_type": "bounded", "episode_length": 20}),
    "ant": (37, 8, {"episode_length": 20}),
}


def make_tiny_checkpoint(directory: Path, task: str = "cartpole") -> Path:
    """What pwm_flow.py saves (its ``run`` state, iteration 7, in ``directory``), with tiny
    networks and a 20-step episode. The bounded reward depends on the action, so even the last
    action has a real gradient (a defined cosine)."""
    obs_dim, action_dim, kwargs = TASK_SPECS.get(task, TASK_SPECS["cartpole"])
    specs = {
        "world_model": {"type": "mlp", "latent_dim": 16, "units": [32], "encoder_units": [32]},
        "actor": {"type": "gaussian", "hidden": [32]},
        "critic": {"hidden": [32]},
        "env": {"name": task, "kwargs": kwargs},
    }
    torch.manual_seed(0)
    world_model = build_world_model(specs["world_model"], obs_dim, action_dim)
    torch.nn.init.normal_(world_model.reward_head[-1].weight)  # a fresh head is constant
    actor = build_actor(specs["actor"], world_model.latent_dim, action_dim)
    norm = RewardNormalization("standardize")  # a loc as well as a scale
    norm.update(torch.tensor([-3.0, -1.0, 0.0, -2.0]))
    state = {
        "modules": {
            "world_model": world_model.state_dict(),
            "actor": actor.state_dict(),
            "reward_norm": norm.state_dict(),
        },
        "specs": specs,
        "counters": {"iteration": 7, "frames": 560},
        "variant": "baseline",
        "seed": 3,
        "config": {"algo": {"gamma": 0.9, "reward_norm": "standardize", "reward_clip": None}},
    }
    checkpoints = RunCheckpoints(directory, keep_last=1, keep_best=False)
    return checkpoints.save({"run": state}, step=7, metadata={"config": state["config"]})


def make_tiny_dataset(path: Path, obs_dim: int = 5) -> Path:
    """A dataset of random cartpole-like transitions (action 1), 12-step episodes in 4 envs;
    ``obs_dim`` other than the cartpole's 5 makes a model that fits no task."""
    num_envs, steps, episode = 4, 48, 12
    gen = torch.Generator().manual_seed(0)
    recorder = DatasetRecorder(
        path, "history", task="cartpole", env_kwargs={}, obs_dim=obs_dim, action_dim=1,
        num_envs=num_envs, capacity=num_envs * steps, source={"policy": "random"}, seed=0,
    )  # fmt: skip
    step = torch.arange(steps)
    done = ((step + 1) % episode == 0).expand(num_envs, steps).unsqueeze(-1)
    ids = (torch.arange(num_envs).unsqueeze(1) * 100 + step // episode).clone()
    obs = torch.randn(num_envs, steps, obs_dim, generator=gen)
    recorder.extend(
        TensorDict(
            {
                "observation": obs,
                "action": torch.rand(num_envs, steps, 1, generator=gen) * 2 - 1,
                ("next", "observation"): obs + 0.1,
                ("next", "reward"): 3.0 * torch.randn(num_envs, steps, 1, generator=gen),
                ("next", "done"): done,
                ("next", "terminated"): done,
                ("next", "truncated"): torch.zeros_like(done),
                ("collector", "traj_ids"): ids,
            },
            [num_envs, steps],
        )
    )
    recorder.commit()
    return path


@pytest.fixture
def make_checkpoint():
    """``make_checkpoint(directory, task="cartpole") -> path``: a tiny untrained checkpoint."""
    return make_tiny_checkpoint
