"""Train PWM (and its flow variants) on a Newton locomotion task.

    python examples/pwm_flow.py                                  # embedded default (CPU)
    python examples/pwm_flow.py experiment=flow_wm world_model.flow_steps=4 seed=1
    python examples/pwm_flow.py experiment=shac env=cartpole   # SHAC: the simulator's gradients

The loop only: collect -> extend the replay buffer -> actor, critic and world-model steps ->
log -> evaluate -> checkpoint. Factories are in ``utils.py``; every option is in ``configs/``.
Re-running a command in the same run directory (``hydra.run.dir=...``) resumes from its latest
checkpoint.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from torchrl_flowmbpo.diagnostics import (
    METRIC_PREFIXES,
    actor_gradient_split,
    collect_rollouts,
    critic_vs_returns,
    exploitation_gap,
    horizon_return_gap,
    imagination_vs_real,
    reference_probe,
    scalar_metrics,
    termination_calibration,
)
from torchrl_flowmbpo.envs.controllers import REFERENCE_CONTROLLERS
from torchrl_flowmbpo.recipes import PWMUpdater, find_latest_checkpoint, save_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shac
from config_check import check_overrides
from reporting import curve_title, plot_learning_curve
from run_support import (
    Evaluator,
    episode_metrics,
    eval_metrics,
    format_return,
    init_warp_quietly,
    interrupted,
    log_to_file,
    plain_torchrl_console,
    print_summary,
    restore,
    run_state,
    task_label,
    task_references,
)
from utils import (
    RunClock,
    check_schedule,
    count_iterations,
    drop_logged_after,
    load_pretrained,
    make_collector,
    make_exact_gradient_check,
    make_logger,
    make_losses,
    make_models,
    make_optimizers,
    make_policy,
    make_recorder,
    make_replay_buffer,
    make_reward_normalization,
    make_task_env,
    make_termination_balance,
    model_specs,
    sample_slices,
    sample_start_observations,
    start_observations,
)
from warm_start import ControllerPrefill, behaviour_cloning_step

#: Keys the collector's policy writes that no loss reads.
POLICY_OUTPUTS = ("latent", "loc", "scale", "cond")


@hydra.main(version_base="1.3", config_path="../configs", config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    plain_torchrl_console()
    init_warp_quietly(cfg.device)
    task = task_label(cfg.env.name, cfg.env.kwargs)
    what_ran = (
        f"pwm_flow.py: {cfg.variant} on {task}, seed {cfg.seed}, {cfg.collector.total_frames:,} "
        f"frames, device {cfg.device}, threads={cfg.threads}; run directory {run_dir}"
    )
    print(what_ran, flush=True)

    def log_start(*notes: str) -> None:
        # Into the run log once the run is accepted: a refused resume leaves the run as it was.
        for line in (what_ran, f"Config:\n{OmegaConf.to_yaml(cfg, resolve=True)}", *notes):
            log_to_file(line)

    if cfg.algo.name == "shac":  # experiment=shac: no world model, the simulator's gradients
        log_start()
        return shac.train(cfg, run_dir)
    specs = model_specs(cfg)
    try:
        # Constructor checks on throw-away tiny models: bad values fail before the simulator
        # compiles.
        check_schedule(cfg)
        make_losses(cfg, *make_models(specs, 1, 1, "cpu"))
        make_reward_normalization(cfg)
        env = make_task_env(
            specs["env"], num_envs=cfg.env.num_envs, device=cfg.device, seed=cfg.seed
        )
        obs_dim = env.observation_spec["observation"].shape[-1]
        action_dim = env.action_spec.shape[-1]
        pretrained = load_pretrained(cfg, specs, obs_dim, action_dim)
        world_model, actor, critic = make_models(specs, obs_dim, action_dim, cfg.device)
        wm_loss, actor_loss, value_loss = make_losses(cfg, world_model, actor, critic)
        reward_norm = make_reward_normalization(cfg)
    except (ValueError, TypeError) as err:
        sys.exit(f"Invalid configuration: {err}")
    reward_norm = reward_norm.to(cfg.device)
    try:
        exact_gradient_check = make_exact_gradient_check(cfg, world_model, reward_norm)
    except ValueError as err:
        sys.exit(f"Invalid configuration: {err}")
    finetune = cfg.world_model.finetune  # False: the pretrained model and its reward units stay
    if pretrained is not None:
        world_model.load_state_dict(pretrained["modules"]["world_model"])
        reward_norm.load_state_dict(pretrained["modules"]["reward_norm"])
        world_model.requires_grad_(finetune)
    replay_buffer = make_replay_buffer(cfg, reward_norm, cfg.device)
    termination_balance = make_termination_balance(cfg, cfg.device)
    iterations = count_iterations(cfg)
    optimizers, schedulers = make_optimizers(cfg, world_model, actor, critic, iterations)
    algo = cfg.algo
    updater = PWMUpdater(
        wm_loss,
        actor_loss,
        value_loss,
        optimizers,
        {
            "world_model": algo.wm_grad_clip,
            "actor": algo.actor_grad_clip,
            "critic": algo.critic_grad_clip,
        },
        critic_iterations=algo.critic_iterations,
        critic_minibatches=algo.critic_minibatches,
        target_tau=algo.target_tau,
        real_value_coef=algo.real_value_coef,
    )
    modules = {
        "world_model": world_model,
        "actor": actor,
        "critic": critic,
        "actor_loss": actor_loss,
        "reward_norm": reward_norm,
    }
    if value_loss.functional:  # holds the target critic's parameters
        modules["value_loss"] = value_loss
    if termination_balance is not None:
        modules["termination_balance"] = termination_balance
    counters = {"iteration": 0, "frames": 0, "wm_warmed_up": False, "elapsed_s": 0.0}
    history: dict[str, list[list[float]]] = {"train/return": [], "eval/return": []}

    checkpoint_dir = run_dir / "checkpoints"
    latest = find_latest_checkpoint(checkpoint_dir)
    resumed: tuple[str, ...] = ()
    if latest is not None:
        state = restore(latest, modules, optimizers, schedulers, config=cfg)
        counters.update(state["counters"])
        history = state["history"]
        env.set_seed(cfg.seed + counters["iteration"])
        resumed = (f"Resumed from {latest} (iteration {counters['iteration']}).",)
        print(*resumed)
        dropped = drop_logged_after(run_dir / "logs", counters["frames"])
        if dropped:
            print(f"Dropped {dropped} logged rows after frame {counters['frames']}.")
    log_start(*resumed)
    try:
        recorder = make_recorder(
            cfg,
            specs["env"],
            obs_dim,
            action_dim,
            frames=counters["frames"],
            capacity=cfg.collector.total_frames + cfg.env.num_envs * algo.horizon,
            source={"script": "pwm_flow", "policy": cfg.variant, "run_dir": str(run_dir)},
        )
    except ValueError as err:
        sys.exit(f"Invalid configuration: {err}")

    def checkpoint() -> Path:
        if recorder is not None:
            recorder.commit()  # the dataset and the run resume from the same frame
        state = run_state(
            cfg,
            modules,
            optimizers,
            counters=counters,
            history=history,
            specs=specs,
            schedulers=schedulers,
        )
        return save_checkpoint(state, checkpoint_dir / f"checkpoint_{counters['iteration']}.pt")

    policy = make_policy(world_model, actor)  # closed loop on real observations
    evaluate = Evaluator(
        lambda n, seed: make_task_env(specs["env"], num_envs=n, device=cfg.device, seed=seed),
        cfg,
        policy,
    )

    critic_check: dict[str, Any] = {}

    def critic_diagnostics() -> dict[str, float]:
        """V(E(o_t)) vs the real discounted return of the stochastic policy, every state scored.

        The check's env runs past the task's time limit by ``extra − 1`` steps, with ``γ^extra <=
        tolerance``: then every state of an ordinary-length episode has an unobserved return
        weight of at most the tolerance, and none of the extra steps' states is scored (scoring
        only a window's first steps would score near-identical start states).
        """
        tolerance = cfg.diagnostics.critic_tail_tolerance
        if not critic_check:
            length = evaluate.env.base_env.episode_length
            window = length - 1 + math.ceil(math.log(tolerance) / math.log(algo.gamma))
            spec = {**specs["env"], "kwargs": {**specs["env"]["kwargs"], "episode_length": window}}
            critic_check["window"] = window
            critic_check["env"] = make_task_env(
                spec, num_envs=evaluate.num_envs, device=cfg.device, seed=cfg.seed + 2000
            )
        with torch.no_grad():
            rollouts = collect_rollouts(critic_check["env"], policy, critic_check["window"])
            result = critic_vs_returns(
                critic,
                world_model,
                rollouts,
                gamma=algo.gamma,
                reward_scale=float(reward_norm.scale),
                tail_tolerance=tolerance,
            )
        return scalar_metrics(result, METRIC_PREFIXES["critic_vs_returns"])

    probe_check: dict[str, Any] = {}

    def probe_diagnostics() -> dict[str, float]:
        """Real vs the model's returns of the reference behaviours, fixed start states."""
        probe_seed = cfg.seed + 3000
        if not probe_check:
            probe_check["env"] = make_task_env(
                specs["env"],
                num_envs=cfg.diagnostics.probe_envs,
                device=cfg.device,
                seed=probe_seed,
            )
        result = reference_probe(
            world_model,
            probe_check["env"],
            policy,
            specs["env"]["name"],
            horizons=[cfg.diagnostics.probe_steps],
            seed=probe_seed,
            reward_scale=float(reward_norm.scale),
            reward_loc=float(reward_norm.loc),
        )
        return scalar_metrics(result, METRIC_PREFIXES["behaviour_probe"])

    logger = make_logger(cfg, str(run_dir))
    horizon = algo.horizon
    actor_batch = algo.actor_batch or cfg.env.num_envs

    def sample_start_states():
        return sample_start_observations(replay_buffer, actor_batch, horizon)

    def actor_critic_step(*, update_actor: bool = True) -> dict[str, float]:
        # The real value loss (if on: the updater decides) reads the slices the actor starts from.
        slices = sample_slices(replay_buffer, actor_batch, horizon)
        return updater.actor_critic_step(
            start_observations(slices), update_actor=update_actor, real_slices=slices
        )

    def world_model_step() -> dict[str, float]:
        batch = sample_slices(replay_buffer, algo.wm_batch_slices, horizon)
        if termination_balance is not None:
            termination_balance.observe_batch(batch.get(("next", "terminated")))
            wm_loss.term_pos_weight.fill_(termination_balance.weight())
        return updater.world_model_step(batch) if finetune else updater.world_model_metrics(batch)

    fresh = counters["frames"] == 0
    buffer_frames = 0
    init_frames = cfg.collector.init_random_frames if fresh else 0
    sampling_policy = policy
    if cfg.collector.init_controller is not None and init_frames:
        controller = REFERENCE_CONTROLLERS[specs["env"]["name"]][cfg.collector.init_controller]
        sampling_policy = ControllerPrefill(
            policy, controller(), frames=init_frames, noise_std=cfg.collector.init_controller_noise
        )
        init_frames = 0  # the controller, not uniform random actions, fills them
    collector = make_collector(
        env,
        sampling_policy,
        frames_per_batch=cfg.env.num_envs * horizon,
        total_frames=max(cfg.collector.total_frames - counters["frames"], 1),
        init_random_frames=init_frames,
    )
    progress = tqdm(total=cfg.collector.total_frames, initial=counters["frames"], unit="frames")
    start_frames = counters["frames"]
    clock = RunClock(counters)
    eval_stats: dict[str, float] = {}
    last_return = float("nan")
    for data in collector:
        frames = data.numel()
        counters["frames"] += frames
        buffer_frames += frames
        diagnose = (
            buffer_frames > cfg.collector.init_random_frames
            and cfg.diagnostics.interval
            and (counters["iteration"] + 1) % cfg.diagnostics.interval == 0
        )
        diagnostics: dict[str, float] = {}
        if diagnose:
            # The fresh batch is held out: the model has not trained on it yet.
            scale = float(reward_norm.scale)
            checks = {
                "imagination_vs_real": imagination_vs_real(
                    world_model, data, horizon=horizon, reward_scale=scale
                ),
                "termination_calibration": termination_calibration(world_model, data),
                "horizon_return_gap": horizon_return_gap(
                    world_model,
                    actor,
                    data,
                    horizon=horizon,
                    gamma=algo.gamma,
                    reward_scale=scale,
                ),
            }
            for name, result in checks.items():
                diagnostics.update(scalar_metrics(result, METRIC_PREFIXES[name]))
            if exact_gradient_check is not None:
                diagnostics.update(exact_gradient_check(data))
        # The policy's own outputs (latent, action-distribution parameters) are recomputed by
        # every loss; storing them would take ~1 KB per transition (92 % of the buffer).
        replay_buffer.extend(data.exclude(*POLICY_OUTPUTS))
        if recorder is not None:
            recorder.extend(data)
        if finetune:
            reward_norm.update(data.get(("next", "reward")))
        if termination_balance is not None:
            termination_balance.observe_data(data.get(("next", "terminated")))
        metrics = episode_metrics(data)
        if metrics:
            history["train/return"].append([counters["frames"], metrics["train/return"]])
        progress.update(frames)
        if buffer_frames < cfg.collector.init_random_frames:
            continue
        if not counters["wm_warmed_up"]:
            # A pretrained model needs no warm-up on the random frames.
            warmup_steps = 0 if pretrained is not None else algo.wm_warmup_steps
            for _ in tqdm(range(warmup_steps), desc="world-model warm-up", leave=False):
                world_model_step()
            for _ in tqdm(range(algo.actor_bc_steps), desc="actor cloning", leave=False):
                batch = sample_slices(replay_buffer, algo.wm_batch_slices, horizon)
                behaviour_cloning_step(world_model, actor, optimizers["actor"], batch.reshape(-1))
            # The first actor steps follow the critic's gradient at z_H: fit it to the initial
            # policy first, so they do not follow a random network.
            for _ in tqdm(range(algo.critic_warmup_steps), desc="critic warm-up", leave=False):
                actor_critic_step(update_actor=False)
            counters["wm_warmed_up"] = True
        for _ in range(algo.actor_updates_per_iter):
            metrics.update(actor_critic_step())
        for _ in range(algo.wm_updates_per_iter):
            wm_metrics = world_model_step()
        for scheduler in schedulers.values():
            scheduler.step()
        counters["iteration"] += 1
        iteration = counters["iteration"]
        metrics["time/elapsed_s"] = clock.tick()
        metrics.update({f"world_model/{k}": v for k, v in wm_metrics.items()})
        metrics["loss/world_model"] = wm_metrics["loss"]
        metrics["loss/actor"] = metrics["actor/loss_actor"]
        metrics["loss/value"] = metrics["critic/loss_value"]
        metrics["time/fps"] = (counters["frames"] - start_frames) / clock.session_s()
        metrics["train/reward_scale"] = float(reward_norm.scale)
        metrics["world_model/term_pos_weight"] = float(wm_loss.term_pos_weight)
        metrics["train/skipped_steps"] = float(sum(updater.skipped_steps.values()))
        if diagnose:
            gap = exploitation_gap(
                metrics["actor/imagined_return"],
                float(data.get(("next", "reward")).mean()),
                gamma=algo.gamma,
                reward_scale=float(reward_norm.scale),
            )
            # The updated actor's gradient, split into the model's reward part and the critic's
            # bootstrap part (no update; one replay sample and one rollout of RNG).
            split = actor_gradient_split(actor_loss, sample_start_states())
            metrics.update(diagnostics)
            metrics.update(scalar_metrics(gap, METRIC_PREFIXES["exploitation_gap"]))
            metrics.update(scalar_metrics(split, METRIC_PREFIXES["actor_gradient_split"]))
        if cfg.eval.interval and iteration % cfg.eval.interval == 0:
            eval_stats = evaluate()
            metrics.update({f"eval/{k}": v for k, v in eval_stats.items()})
            metrics.update(eval_metrics(eval_stats))
            history["eval/return"].append([counters["frames"], eval_stats["return_mean"]])
            log_to_file(f"Evaluation at {counters['frames']:,} frames: {format_return(eval_stats)}")
            if cfg.diagnostics.critic_tail_tolerance > 0:
                metrics.update(critic_diagnostics())
            if cfg.diagnostics.probe_steps > 0:
                metrics.update(probe_diagnostics())
        if logger is not None:
            for name, value in metrics.items():
                logger.log_scalar(name, value, step=counters["frames"])
        if "train/return" in metrics:
            last_return = metrics["train/return"]
        progress.set_postfix(
            ret=f"{last_return:.1f}",
            wm=f"{metrics['loss/world_model']:.3f}",
            actor=f"{metrics['loss/actor']:.3f}",
            value=f"{metrics['loss/value']:.3f}",
        )
        if iteration % cfg.checkpoint.interval == 0:
            clock.tick()  # the evaluation above included: a resume never steps back
            checkpoint()
    progress.close()
    collector.shutdown()
    last_eval = history["eval/return"][-1][0] if history["eval/return"] else None
    evaluated_now = bool(eval_stats) and last_eval == counters["frames"]
    if not evaluated_now:
        eval_stats = evaluate()
        history["eval/return"].append([counters["frames"], eval_stats["return_mean"]])
        if logger is not None:
            for name, value in eval_metrics(eval_stats).items():
                logger.log_scalar(name, value, step=counters["frames"])
    clock.tick()
    path = checkpoint()
    curve = plot_learning_curve(
        history,
        run_dir / "learning_curve.png",
        title=curve_title(cfg.variant, task, cfg.seed),
        references=task_references(cfg.env.name, cfg.env.kwargs),
    )
    print_summary(eval_stats, path, curve)


if __name__ == "__main__":
    problem = check_overrides([a for a in sys.argv[1:] if "=" in a and not a.startswith("-")])
    if problem:
        sys.exit(problem)
    with interrupted("pwm_flow.py"):
        main()
