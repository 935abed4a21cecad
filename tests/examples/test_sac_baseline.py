"""examples/sac_baseline.py: a tiny cartpole run logs finite metrics, evaluates, plots and
checkpoints; a rerun in its directory resumes; bad keys fail in one line; one SAC update moves
the actor."""

from __future__ import annotations

import itertools
import shutil
import sys
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict
from tensordict.utils import assert_allclose_td
from torchrl.data import Bounded

from torchrl_flowmbpo.config.entry import check_command_line
from torchrl_flowmbpo.trainers import load_checkpoint
from torchrl_flowmbpo.trainers import sac_factories as sac_utils

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
#: 10 iterations of 64 frames on 4 cartpoles with 50-step episodes; updates from iteration 2 on.
TINY = (
    "env=cartpole env.num_envs=4 +env.kwargs.episode_length=50 collector.frames_per_batch=64 "
    "sac.init_random_frames=128 sac.batch_size=32 sac.utd_ratio=0.25 sac.hidden_sizes=[32,32] "
    "sac.buffer_size=10000 eval.episodes=2 eval.num_envs=2 eval.interval=4 checkpoint.interval=3 "
    "logger=csv seed=1 device=cpu threads=1"
)
FIRST_FRAMES, SECOND_FRAMES = 640, 896
UPDATES_PER_ITERATION = 16  # round(utd_ratio x frames_per_batch)
SCALARS = (
    "train/return",
    "train/episode_length",
    "train/return_per_step",
    "eval/return",
    "eval/episode_length",
    "loss/actor",
    "loss/qvalue",
    "loss/alpha",
    "time/fps",
    "time/elapsed_s",
)


@pytest.fixture(scope="module")
def start_sac(scripts, tmp_path_factory):
    """``start_sac(args, run_dir) -> PendingRun`` of sac_baseline.py, via the conftest's runner."""
    # conftest.py is imported by pytest, not by name: reach its runner through its fixture.
    pending_run = sys.modules[type(scripts).__module__].PendingRun

    def start(args: str, run_dir: Path):
        cwd = tmp_path_factory.mktemp("sac")
        return pending_run("sac_baseline.py", args.split(), cwd, run_dir)

    return start


@pytest.fixture(scope="module")
def bad_key(start_sac, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sac_bad") / "run"
    return start_sac(f"sac.lrr=1e-3 hydra.run.dir={run_dir}", run_dir)


@pytest.fixture(scope="module")
def smoke(start_sac, bad_key, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sac_smoke") / "run"
    run = start_sac(
        f"{TINY} collector.total_frames={FIRST_FRAMES} hydra.run.dir={run_dir}", run_dir
    )
    return run.result().check()


@pytest.fixture(scope="module")
def resumed(smoke, start_sac, tmp_path_factory):
    # A copy of the finished smoke run, so the smoke tests see it unchanged in any order.
    run_dir = tmp_path_factory.mktemp("sac_resume") / "run"
    shutil.copytree(smoke.run_dir, run_dir)
    args = f"{TINY} collector.total_frames={SECOND_FRAMES} hydra.run.dir={run_dir}"
    second = start_sac(args, run_dir).result().check()
    return load_checkpoint(smoke.run_dir), second, load_checkpoint(run_dir)


def test_smoke_run_logs_finite_metrics_every_iteration(smoke, read_scalars):
    (log_dir,) = (smoke.run_dir / "logs").iterdir()
    assert log_dir.name == "sac_cartpole_seed1"
    for name in SCALARS:
        steps, _ = read_scalars(log_dir / "scalars" / f"{name}.csv")
        assert all(b > a for a, b in itertools.pairwise(steps)), f"{name}: steps {steps}"
    steps, elapsed = read_scalars(log_dir / "scalars" / "time/elapsed_s.csv")
    assert steps == [64.0 * i for i in range(1, 11)]
    assert all(b > a > 0 for a, b in itertools.pairwise(elapsed))
    steps, _ = read_scalars(log_dir / "scalars" / "loss/qvalue.csv")
    assert steps == [64.0 * i for i in range(2, 11)]  # no update on the random first batch
    steps, _ = read_scalars(log_dir / "scalars" / "eval/return.csv")
    assert steps == [256, 512, 640]  # iterations 4 and 8, then the final evaluation
    assert not (log_dir / "scalars" / "eval/forward_velocity.csv").exists()  # not a cartpole's


def test_smoke_run_checkpoints_prints_and_plots(smoke):
    # Checkpoints at 3, 4 (evaluated), 6, 8 (evaluated), 9 and 10 (final): the rotation keeps
    # the last three and the best evaluated one.
    files = {p.name for p in (smoke.run_dir / "checkpoints").iterdir()}
    last = {f"checkpoint-{i:012d}.torchrl" for i in (8, 9, 10)}
    assert last <= files <= last | {"checkpoint-000000000004.torchrl"}
    state = load_checkpoint(smoke.run_dir)
    assert state["counters"]["iteration"] == 10
    assert state["counters"]["frames"] == FIRST_FRAMES
    assert state["counters"]["updates"] == 9 * UPDATES_PER_ITERATION
    assert (state["variant"], state["seed"]) == ("sac", 1)
    assert state["config"]["sac"]["hidden_sizes"] == [32, 32]
    assert state["specs"]["env"] == {"name": "cartpole", "kwargs": {"episode_length": 50}}
    assert set(state["modules"]) == {"actor", "loss"} and "log_alpha" in state["modules"]["loss"]
    assert set(state["optimizers"]) == {"actor", "qvalue", "alpha"}
    (line,) = [s for s in smoke.stdout.splitlines() if s.startswith("Evaluation (")]
    assert line.startswith("Evaluation (2 episodes, deterministic): return ")
    assert (smoke.run_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_resumes_counters_optimizers_and_logs(resumed, read_scalars):
    before, second, after = resumed
    (line,) = [s for s in second.stdout.splitlines() if s.startswith("Resumed from")]
    assert "checkpoint-000000000010.torchrl (iteration 10)" in line
    assert after["counters"]["iteration"] == 14
    assert after["counters"]["frames"] == SECOND_FRAMES
    assert after["counters"]["elapsed_s"] > before["counters"]["elapsed_s"]
    # The buffer is restored: the updates resume with the first new batch.
    new_updates = after["counters"]["updates"] - before["counters"]["updates"]
    assert new_updates == 4 * UPDATES_PER_ITERATION
    for name in ("actor", "qvalue", "alpha"):
        steps = [s["optimizers"][name]["state"][0]["step"] for s in (before, after)]
        assert steps[1] - steps[0] == new_updates, name
    first_evals = before["history"]["eval/return"]
    assert after["history"]["eval/return"][: len(first_evals)] == first_evals
    (log_dir,) = (second.run_dir / "logs").iterdir()
    steps, elapsed = read_scalars(log_dir / "scalars" / "time/elapsed_s.csv")
    assert steps == [64.0 * i for i in range(1, 15)]
    assert all(b > a for a, b in itertools.pairwise(elapsed))
    # The checkpoint's clock includes the evaluation after its logged clock: no step back.
    for counters in (before["counters"], after["counters"]):
        assert counters["elapsed_s"] > elapsed[steps.index(counters["frames"])]


def test_bad_key_fails_with_one_line(bad_key):
    run = bad_key.result()
    assert run.returncode == 1
    (message,) = run.stderr.strip().splitlines()
    assert message.startswith("Invalid configuration: sac.lrr is not a key of sac; allowed keys")
    assert "'lr'" in message and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("config", "override", "expected"),
    [
        (
            "sac",
            "env=pendulum",
            "allowed: one of ['ant', 'anymal', 'cartpole', 'cartpole_balance', 'humanoid']",
        ),
        ("sac", "world_model=flow", "Could not override 'world_model'"),
        ("sac", "algo.gamma=0.9", "algo is not a key of the config"),
        ("config", "sac.lr=1e-3", "sac is not a key of the config"),
        ("sac", "sac.gamma=0.9", None),
        ("sac", "logger=none", None),
        ("config", "experiment=flow_wm", None),
    ],
)
def test_overrides_are_checked_against_their_own_config(config, override, expected):
    problem = check_command_line(CONFIG_DIR, config, [override])
    assert problem is None if expected is None else expected in problem


def test_one_update_moves_actor_and_polyaks_the_target():
    torch.manual_seed(0)
    spec = Bounded(-1.0, 1.0, shape=(2,))
    actor = sac_utils.make_actor(5, spec, hidden_sizes=(16, 16))
    qvalue = sac_utils.make_qvalue(5, 2, hidden_sizes=(16, 16))
    loss, target_updater = sac_utils.make_loss(actor, qvalue, spec, gamma=0.99, tau=0.1)
    optimizers = sac_utils.make_optimizers(loss, lr=1e-2)
    batch = TensorDict(
        {
            "observation": torch.randn(64, 5),
            "action": torch.rand(64, 2) * 2 - 1,
            "next": {
                "observation": torch.randn(64, 5),
                "reward": torch.randn(64, 1),
                "done": torch.zeros(64, 1, dtype=torch.bool),
                "terminated": torch.zeros(64, 1, dtype=torch.bool),
            },
        },
        [64],
    )
    actor_before = [p.detach().clone() for p in actor.parameters()]
    target_before = loss.target_qvalue_network_params.clone()
    log_alpha = loss.log_alpha.detach().clone()
    out = sac_utils.update(loss, optimizers, target_updater, batch.clone())
    assert all(torch.isfinite(v) for v in out.values())
    # The actor module itself is trained (the loss shares its weights, not a copy).
    for before, after in zip(actor_before, actor.parameters(), strict=True):
        assert not torch.equal(before, after)
    assert not torch.equal(loss.log_alpha, log_alpha)
    # SoftUpdate: target <- (1 - tau) target + tau online, for every ensemble member.
    expected = target_before.apply(
        lambda t, q: 0.9 * t + 0.1 * q, loss.qvalue_network_params.detach()
    )
    assert_allclose_td(loss.target_qvalue_network_params, expected, rtol=0, atol=1e-6)
    assert not (loss.target_qvalue_network_params == target_before).all()
