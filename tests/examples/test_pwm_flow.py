"""Smoke runs of examples/pwm_flow.py: every experiment bundle trains, logs, plots, evaluates
and checkpoints; overrides land in the checkpoint; a rerun in the same run directory resumes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from torchrl_flowmbpo.modules.builders import build_world_model
from torchrl_flowmbpo.trainers import find_latest_checkpoint, load_checkpoint

BUNDLES = {
    # bundle: (world-model type, actor type)
    "baseline": ("mlp", "gaussian"),
    "flow_wm": ("flow", "gaussian"),
    "flow_policy": ("mlp", "flow"),
    "full_flow": ("flow", "flow"),
}
SCALARS = (
    "loss/world_model",
    "loss/actor",
    "loss/value",
    "eval/return",
    "eval/forward_velocity",
    "time/fps",
    "time/elapsed_s",
)
FRAMES_PER_BATCH = 4 * 16  # env.num_envs x algo.horizon


@pytest.fixture(scope="module")
def bundles(bundle_runs):
    bundle_runs.start(*BUNDLES)  # concurrently
    return bundle_runs


@pytest.fixture
def run(bundles, bundle):
    return bundles.get(bundle)


@pytest.fixture
def checkpoint(run):
    return load_checkpoint(run.run_dir)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_bundle_run_logs_finite_metrics_with_increasing_steps(run, read_scalars, bundle):
    (log_dir,) = (run.run_dir / "logs").iterdir()
    assert log_dir.name == f"{bundle}_ant_seed1"
    for name in SCALARS:
        steps, _ = read_scalars(log_dir / "scalars" / f"{name}.csv")
        assert all(b > a for a, b in itertools.pairwise(steps)), f"{name}: steps {steps}"
    steps, _ = read_scalars(log_dir / "scalars" / "loss/world_model.csv")
    assert steps[-1] == (512 if bundle == "flow_wm" else 320)
    if bundle != "flow_wm":  # periodic evaluation at iteration 3, final one at iteration 4
        for name in ("eval/return", "eval/forward_velocity"):
            steps, _ = read_scalars(log_dir / "scalars" / f"{name}.csv")
            assert steps == [256, 320], name


@pytest.mark.parametrize("bundle", BUNDLES)
def test_bundle_run_prints_evaluation_and_plots(run, bundle):
    lines = run.stdout.splitlines()
    (evaluation,) = [line for line in lines if line.startswith("Evaluation (")]
    episodes = 2 if bundle == "flow_wm" else 1
    assert evaluation.startswith(f"Evaluation ({episodes} episodes, deterministic): return ")
    curve = run.run_dir / "learning_curve.png"
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_bundle_checkpoint_records_the_variant(checkpoint, bundle):
    state = checkpoint
    wm_type, actor_type = BUNDLES[bundle]
    assert state["variant"] == bundle
    assert state["seed"] == 1
    assert state["specs"]["world_model"]["type"] == wm_type
    assert state["specs"]["actor"]["type"] == actor_type
    assert state["specs"]["env"] == {"name": "ant", "kwargs": {"episode_length": 100}}
    assert state["config"]["variant"] == bundle
    # The spec is the config without the keys of where the model starts (not constructor args).
    run_keys = {"pretrained": None, "finetune": True}
    assert state["config"]["world_model"] == {**state["specs"]["world_model"], **run_keys}
    assert set(state["modules"]) == {
        "world_model",
        "actor",
        "critic",
        "actor_loss",
        "reward_norm",
        "termination_balance",
    }
    iterations = 7 if bundle == "flow_wm" else 4
    counters = dict(state["counters"])
    balance = state["modules"]["termination_balance"]
    # Every collected transition counted, and the 8-slice x 16-step batches of every WM step
    # (2 warm-up steps, then Ant's 2 per iteration: configs/algo_env/ant.yaml).
    assert state["config"]["algo"]["wm_updates_per_iter"] == 2
    assert balance["data_count"].item() == counters["frames"]
    assert balance["batch_count"].item() == (2 + 2 * iterations) * 8 * 16
    assert counters.pop("elapsed_s") > 0
    assert counters == {
        "iteration": iterations,
        "frames": 512 if bundle == "flow_wm" else 320,
        "wm_warmed_up": True,
    }


@pytest.mark.parametrize("bundle", ["flow_wm"])
def test_issue_command_overrides_land_in_the_checkpoint(run, checkpoint, bundle):
    state = checkpoint
    spec = state["specs"]["world_model"]
    assert (spec["type"], spec["integrator"], spec["flow_steps"]) == ("flow", "heun", 4)
    assert state["config"]["collector"]["total_frames"] == 512
    assert state["config"]["eval"]["episodes"] == 2
    assert state["config"]["device"] == "cpu"
    world_model = build_world_model(spec, 37, 8)
    world_model.load_state_dict(state["modules"]["world_model"])
    assert world_model.flow_steps == 4
    path = run.run_dir / "checkpoints" / "checkpoint-000000000007.torchrl"
    assert load_checkpoint(path)["counters"]["iteration"] == 7


# ----------------------------------------------------------------------------------------------
# Resume: rerunning the command in the same run directory continues from its latest checkpoint.

RESUME = (
    "env=ant env.num_envs=4 collector.total_frames={frames} eval.episodes=1 eval.num_envs=1 "
    "eval.interval=1 checkpoint.interval=1 logger=csv seed=3 device=cpu hydra.run.dir=DIR "
    "diagnostics=full diagnostics.critic_tail_tolerance=0.5 diagnostics.interval=1 "
    "algo.target_critic=true"
)
FIRST_FRAMES, SECOND_FRAMES = 256, 448


@pytest.fixture(scope="module")
def resumed(scripts, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("resume") / "run"
    first = scripts.start_training(RESUME.format(frames=FIRST_FRAMES), run_dir=run_dir)
    first = first.result().check()
    first_state = load_checkpoint(run_dir)
    first_files = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    second = scripts.start_training(RESUME.format(frames=SECOND_FRAMES), run_dir=run_dir)
    second = second.result().check()
    return first, first_state, first_files, second, load_checkpoint(run_dir)


def test_first_run_checkpoints_every_iteration(resumed):
    first, first_state, first_files, _, _ = resumed
    assert "Resumed from" not in first.stdout
    iterations = first_state["counters"]["iteration"]
    assert iterations == 3  # 256 frames: 2 random batches, learning from the 2nd on
    assert first_files == [f"checkpoint-{i:012d}.torchrl" for i in range(1, iterations + 1)]


def test_second_run_resumes_counters_and_optimizers(resumed):
    _, first_state, first_files, second, state = resumed
    latest = first_files[-1]
    (line,) = [s for s in second.stdout.splitlines() if s.startswith("Resumed from")]
    assert latest in line
    assert f"(iteration {first_state['counters']['iteration']})" in line
    before, after = first_state["counters"], state["counters"]
    assert after["iteration"] > before["iteration"]
    assert after["frames"] > before["frames"]
    expected = math.ceil(SECOND_FRAMES / FRAMES_PER_BATCH) * FRAMES_PER_BATCH
    assert after["frames"] in (SECOND_FRAMES, expected)
    assert after["wm_warmed_up"]
    new_iterations = after["iteration"] - before["iteration"]
    for name in ("world_model", "actor", "critic"):
        step_before = first_state["optimizers"][name]["state"][0]["step"]
        step_after = state["optimizers"][name]["state"][0]["step"]
        assert step_after > step_before, name
        # the LR schedule continues from the resumed iteration
        assert state["schedulers"][name]["last_epoch"] == after["iteration"]
    # The target critic (in the value loss, saved only when it has one) resumes and moves on.
    target_before = first_state["modules"]["value_loss"]
    target_after = state["modules"]["value_loss"]
    target_keys = [key for key in target_after if key.startswith("target_critic_network_params")]
    assert target_keys and set(target_keys) <= set(target_before)
    assert not all(torch.equal(target_before[k], target_after[k]) for k in target_keys)
    actor_steps = (
        state["optimizers"]["actor"]["state"][0]["step"]
        - first_state["optimizers"]["actor"]["state"][0]["step"]
    )
    assert actor_steps == new_iterations  # one actor step per iteration
    # The history was restored, not restarted.
    assert len(state["history"]["eval/return"]) > len(first_state["history"]["eval/return"])
    assert (
        state["history"]["eval/return"][: len(first_state["history"]["eval/return"])]
        == (first_state["history"]["eval/return"])
    )


def test_rerun_with_another_config_is_refused_and_changes_nothing(scripts, resumed):
    run_dir = resumed[3].run_dir

    def run_files() -> dict:
        # Hydra rewrites .hydra/ at every start, before the script runs; the run lock and
        # provenance.json record each start.
        starts = (".run.lock", "provenance.json")
        paths = (
            p
            for p in run_dir.rglob("*")
            if p.is_file() and ".hydra" not in p.parts and p.name not in starts
        )
        return {p: p.stat().st_mtime_ns for p in paths}

    files = run_files()
    overrides = RESUME.format(frames=SECOND_FRAMES) + " algo.gamma=0.98"
    refused = scripts.start_training(overrides, run_dir=run_dir).result()
    assert refused.returncode != 0
    assert "algo.gamma: 0.99 there, 0.98 now" in refused.stderr
    assert run_files() == files


def test_resumed_run_appends_to_the_same_logs(resumed, read_scalars):
    _, first_state, _, second, state = resumed
    (log_dir,) = (second.run_dir / "logs").iterdir()
    steps, _ = read_scalars(log_dir / "scalars" / "loss/world_model.csv")
    assert all(b > a for a, b in itertools.pairwise(steps))
    assert steps[-1] == state["counters"]["frames"]
    assert first_state["counters"]["frames"] in steps
    # Wall-clock continues across the resume instead of restarting at 0.
    clock_steps, elapsed = read_scalars(log_dir / "scalars" / "time/elapsed_s.csv")
    assert all(b > a for a, b in itertools.pairwise(elapsed))
    assert state["counters"]["elapsed_s"] > first_state["counters"]["elapsed_s"] > 0
    # A checkpoint's clock includes the evaluation logged after its step's clock, so a run
    # resumed from any checkpoint cannot log a time below one already logged.
    for counters in (first_state["counters"], state["counters"]):
        logged = elapsed[clock_steps.index(counters["frames"])]
        assert counters["elapsed_s"] > logged


def test_final_evaluation_does_not_repeat_a_logged_step(resumed, read_scalars):
    first, *_ = resumed
    (log_dir,) = (first.run_dir / "logs").iterdir()
    steps, _ = read_scalars(log_dir / "scalars" / "eval/return.csv")
    assert len(steps) == len(set(steps)), steps


def test_evaluations_log_the_critic_against_real_returns(resumed, read_scalars):
    # Tolerance 0.5 at γ = 0.99: γ^69 <= 0.5 < γ^68, so the check runs one stochastic episode of
    # 100 + 68 = 168 steps and scores a state when at least 69 steps follow it: all 100 states of
    # an ordinary 100-step episode, none after them, unless the episode terminates (then its later
    # states are complete and scored too).
    first, *_ = resumed
    scalars = next((first.run_dir / "logs").iterdir()) / "scalars"
    eval_steps, _ = read_scalars(scalars / "eval/return.csv")
    steps, counts = read_scalars(scalars / "diagnostics/critic_count.csv")
    _, totals = read_scalars(scalars / "diagnostics/critic_count_total.csv")
    assert set(steps) <= set(eval_steps) and len(steps) >= 3
    assert totals == [168.0] * len(steps)
    assert all(count >= 100 for count in counts), counts
    for name in ("bias", "mae", "value_mean", "return_mean"):
        read_scalars(scalars / f"diagnostics/critic_{name}.csv")  # finite


def test_evaluations_log_the_behaviour_probe(resumed, read_scalars):
    # Zero, random, the policy and the Ant's trot: real vs model sums over 64 steps.
    first, *_ = resumed
    scalars = next((first.run_dir / "logs").iterdir()) / "scalars"
    eval_steps, _ = read_scalars(scalars / "eval/return.csv")
    steps, agreement = read_scalars(scalars / "diagnostics/probe_rank_agreement.csv")
    assert set(steps) <= set(eval_steps) and len(steps) >= 3
    assert all(v in (0.0, 1 / 6, 2 / 6, 0.5, 4 / 6, 5 / 6, 1.0) for v in agreement), agreement
    for behaviour in ("zero", "random", "policy", "trot"):
        _, real = read_scalars(scalars / f"diagnostics/probe_{behaviour}_real.csv")
        read_scalars(scalars / f"diagnostics/probe_{behaviour}_model.csv")  # finite
        # The same start states and actions every time: the real sums of the fixed
        # behaviours repeat exactly.
        if behaviour != "policy":
            assert real == pytest.approx([real[0]] * len(real)), (behaviour, real)


def test_diagnostics_log_the_actor_gradient_split(resumed, read_scalars):
    # diagnostics.interval=1: every learning iteration after the first, in both sessions.
    _, first_state, _, second, state = resumed
    scalars = next((second.run_dir / "logs").iterdir()) / "scalars"
    names = ("reward_grad_norm", "bootstrap_grad_norm", "grad_cosine", "bootstrap_share")
    series = {n: read_scalars(scalars / f"diagnostics/actor_{n}.csv") for n in names}  # finite
    steps = series["grad_cosine"][0]
    assert first_state["counters"]["frames"] in steps and state["counters"]["frames"] in steps
    assert all(-1.0 <= v <= 1.0 for v in series["grad_cosine"][1])
    assert all(0.0 <= v <= 1.0 for v in series["bootstrap_share"][1])
    for name in ("grad_norm_ratio", "reward_part_mean", "bootstrap_part_mean"):
        read_scalars(scalars / f"diagnostics/actor_{name}.csv")


def test_resume_after_a_lost_checkpoint_drops_the_rows_it_logs_again(
    scripts, tmp_path_factory, read_scalars
):
    # A run stopped after logging an iteration but before checkpointing it: its resume starts
    # from the iteration before and logs that one again; the stale rows must go.
    run_dir = tmp_path_factory.mktemp("lost_checkpoint") / "run"
    scripts.start_training(RESUME.format(frames=FIRST_FRAMES), run_dir=run_dir).result().check()
    latest = find_latest_checkpoint(run_dir)
    latest.unlink()
    frames = load_checkpoint(run_dir)["counters"]["frames"]
    (log_dir,) = (run_dir / "logs").iterdir()
    stale, _ = read_scalars(log_dir / "scalars" / "loss/world_model.csv")
    assert max(stale) > frames
    second = scripts.start_training(RESUME.format(frames=SECOND_FRAMES), run_dir=run_dir)
    second = second.result().check()
    (line,) = [s for s in second.stdout.splitlines() if s.startswith("Dropped")]
    assert line.endswith(f"after frame {frames}.")
    for name in ("loss/world_model.csv", "eval/return.csv", "time/elapsed_s.csv"):
        steps, _ = read_scalars(log_dir / "scalars" / name)
        assert all(b > a for a, b in itertools.pairwise(steps)), (name, steps)
