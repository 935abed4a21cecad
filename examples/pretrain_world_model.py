"""Pretrain a world model offline on a recorded dataset, logging held-out accuracy (PWM's protocol).

    python examples/pretrain_world_model.py dataset.path=runs/datasets/anymal_sac world_model=mlp
    python examples/pretrain_world_model.py dataset.path=... world_model=flow \\
        world_model.flow_steps=4 steps=20000 hydra.run.dir=runs/pretrain/flow

The dataset's episodes are split by env column (``dataset.held_out_envs`` held out); the
training split fills the ``SliceSampler`` replay buffer of the online pipeline, so the loss
(``WorldModelLoss`` with the ``algo`` options of ``configs/algo/pwm.yaml``) sees the same
``[B, H]`` slices as in ``pwm_flow.py``. Rewards are normalised as online: the normaliser's
statistics are updated once with every training reward (each frame counted once) and saved with
the model. Every ``eval.interval`` steps the held-out metrics (``pretrain_utils.py``) are
appended to ``<run dir>/metrics.csv``; checkpoints (``checkpoints/checkpoint_<step>.pt``) hold
the model, the normaliser, the optimiser and the RNG, and re-running the command in the same run
directory resumes from the latest one (``steps`` may grow). ``pwm_flow.py
world_model.pretrained=<run dir>`` extracts a policy from the result.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from tqdm import tqdm

from torchrl_flowmbpo.data import (
    DatasetError,
    held_out_split,
    load_dataset,
    make_slice_buffer,
)
from torchrl_flowmbpo.envs import make_env
from torchrl_flowmbpo.recipes import build_world_model, find_latest_checkpoint, save_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from config_check import check_overrides
from pretrain_utils import MetricsCSV, held_out_metrics, make_gradient_check
from run_support import RESUMABLE_CHANGES, interrupted, restore, run_state
from utils import (
    RunClock,
    make_reward_normalization,
    make_termination_balance,
    make_world_model_loss,
    world_model_spec,
)

#: Keys a resumed pretraining may change: a longer run, and how often it reports.
PRETRAIN_RESUMABLE = (*RESUMABLE_CHANGES, "steps", "eval.interval")


@hydra.main(version_base="1.3", config_path="../configs", config_name="pretrain")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    torch.set_num_threads(cfg.threads)
    algo, horizon = cfg.algo, cfg.algo.horizon
    try:
        if cfg.steps < 1 or cfg.eval.interval < 1 or cfg.checkpoint.interval < 1:
            raise ValueError(
                f"steps={cfg.steps}, eval.interval={cfg.eval.interval} and "
                f"checkpoint.interval={cfg.checkpoint.interval} must be >= 1."
            )
        if cfg.dataset.path is None:
            raise ValueError("dataset.path=PATH is required (a dataset directory).")
        parts = None if cfg.dataset.parts is None else list(cfg.dataset.parts)
        data, manifest = load_dataset(cfg.dataset.path, parts)
        train, held_out = held_out_split(data, cfg.dataset.held_out_envs)
        reward_norm = make_reward_normalization(cfg).to(cfg.device)
        train_buffer = make_slice_buffer(
            train,
            slice_len=horizon,
            batch_size=algo.wm_batch_slices * horizon,
            transform=reward_norm,
        )
        torch.manual_seed(cfg.seed + 1)  # the same held-out sample in every session of a run
        eval_slices = (
            make_slice_buffer(held_out, slice_len=horizon, batch_size=cfg.eval.slices * horizon)
            .sample()
            .reshape(-1, horizon)
        )
        torch.manual_seed(cfg.seed)
        spec = world_model_spec(cfg)
        obs_dim, action_dim = manifest["obs_dim"], manifest["action_dim"]
        world_model = build_world_model(spec, obs_dim, action_dim).to(cfg.device)
        wm_loss = make_world_model_loss(cfg, world_model)
    except (DatasetError, ValueError, TypeError) as err:
        sys.exit(f"Invalid configuration: {err}")
    reward_norm.update(train.get(("next", "reward")))
    balance = make_termination_balance(cfg, cfg.device)
    if balance is not None:
        balance.observe_data(train.get(("next", "terminated")))
    optimizer = torch.optim.Adam(world_model.parameters(), lr=algo.wm_lr)
    modules = {"world_model": world_model, "reward_norm": reward_norm}
    if balance is not None:
        modules["termination_balance"] = balance
    optimizers = {"world_model": optimizer}
    specs = {
        "world_model": spec,
        "env": {"name": manifest["task"], "kwargs": manifest["env_kwargs"]},
        "dims": {"observation": obs_dim, "action": action_dim},
        "dataset": {"path": str(Path(cfg.dataset.path).resolve()), "parts": parts},
    }
    counters = {"step": 0, "elapsed_s": 0.0}
    log = MetricsCSV(run_dir / "metrics.csv")
    checkpoint_dir = run_dir / "checkpoints"
    latest = find_latest_checkpoint(checkpoint_dir)
    if latest is not None:
        try:
            state = restore(latest, modules, optimizers, config=cfg, may_change=PRETRAIN_RESUMABLE)
        except ValueError as err:
            sys.exit(f"Invalid configuration: {err}")
        counters.update(state["counters"])
        log.drop_after(counters["step"])
        print(f"Resumed from {latest} (step {counters['step']}).")

    gradient_check = None
    if cfg.eval.gradient_states:
        states = eval_slices["observation"][: cfg.eval.gradient_states, 0]
        generator = torch.Generator().manual_seed(cfg.seed + 2)
        reach = cfg.eval.gradient_action_range
        shape = (states.shape[0], cfg.eval.gradient_horizon, action_dim)
        actions = (torch.rand(shape, generator=generator) * 2 - 1) * reach
        env = make_env(
            manifest["task"],
            num_envs=states.shape[0],
            device=cfg.device,
            seed=cfg.seed,
            **manifest["env_kwargs"],
        )
        gradient_check = make_gradient_check(env, states, actions, reward_norm, gamma=algo.gamma)

    def evaluate(train_loss: float) -> None:
        world_model.eval()
        metrics = held_out_metrics(
            world_model,
            reward_norm,
            eval_slices,
            held_out.reshape(-1),
            gamma=algo.gamma,
            gradient_check=gradient_check,
        )
        world_model.train()
        log.append(
            {
                "step": counters["step"],
                "elapsed_s": clock.tick(),
                "train_loss": train_loss,
                **metrics,
            }
        )

    def checkpoint() -> Path:
        clock.tick()
        state = run_state(cfg, modules, optimizers, counters=counters, history={}, specs=specs)
        return save_checkpoint(state, checkpoint_dir / f"checkpoint_{counters['step']}.pt")

    clock = RunClock(counters)
    if counters["step"] == 0:
        evaluate(float("nan"))
    params = list(world_model.parameters())
    losses: list[torch.Tensor] = []
    progress = tqdm(total=cfg.steps, initial=counters["step"], unit="steps")
    while counters["step"] < cfg.steps:
        batch = train_buffer.sample().reshape(-1, horizon)
        if balance is not None:
            balance.observe_batch(batch.get(("next", "terminated")))
            wm_loss.term_pos_weight.fill_(balance.weight())
        out = wm_loss(batch)
        loss = sum(value for key, value in out.items() if key.startswith("loss_"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if torch.isfinite(torch.nn.utils.clip_grad_norm_(params, algo.wm_grad_clip)):
            optimizer.step()  # a non-finite gradient is skipped, as online
        losses.append(loss.detach())
        counters["step"] += 1
        progress.update(1)
        step = counters["step"]
        if step % cfg.eval.interval == 0 or step == cfg.steps:
            mean_loss = float(torch.stack(losses).mean())
            losses.clear()
            progress.set_postfix(loss=f"{mean_loss:.3f}")
            evaluate(mean_loss)
        if step % cfg.checkpoint.interval == 0:
            checkpoint()
    progress.close()
    path = checkpoint()
    last = log.rows()[-1]
    print(
        f"Held-out at step {last['step']}: reward corr {float(last['reward_corr_mean']):.3f}, "
        f"{horizon}-step return corr {float(last['return_corr']):.3f}, latent error "
        f"{float(last['latent_error_mean']):.4f}; metrics: {log.path}; checkpoint: {path}"
    )


if __name__ == "__main__":
    problem = check_overrides(
        [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")], config_name="pretrain"
    )
    if problem:
        sys.exit(problem)
    with interrupted("pretrain_world_model.py"):
        main()
