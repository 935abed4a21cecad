"""Research instrumentation of a PWM run as optional hooks of
:class:`~torchrl_flowmbpo.trainers.PWMTrainer`, all off by default (``diagnostics=none``).

``cfg.diagnostics`` (``python examples/pwm_flow.py diagnostics=full`` turns the measurements on)
measures without changing what the run learns, though the checks draw random numbers:

- every ``interval`` iterations, on the fresh batch before the model trains on it: imagination
  vs real, termination calibration, the H-step return gap and (``exact_gradient``) the model's
  action gradient against the exact one of a differentiable simulator; after the iteration's
  updates, the exploitation gap and the actor's gradient split;
- at every periodic evaluation: the critic against real discounted returns
  (``critic_tail_tolerance``) and the behaviour probe (``probe_steps``), each on an extra
  simulator built on first use.

``cfg.research`` changes the run (experiments, not PWM): scripted-controller init frames
(``init_controller``, ``init_controller_noise``), behaviour cloning of the actor on them
(``actor_bc_steps``), critic-only warm-up steps (``critic_warmup_steps``) and the critic's loss on
real replay slices (``real_value_coef``, read by the updater).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tqdm import tqdm

from torchrl_flowmbpo.data import sample_slices
from torchrl_flowmbpo.diagnostics.actor_gradients import actor_gradient_split
from torchrl_flowmbpo.diagnostics.behaviours import reference_probe
from torchrl_flowmbpo.diagnostics.common import METRIC_PREFIXES, scalar_metrics
from torchrl_flowmbpo.diagnostics.controllers import REFERENCE_CONTROLLERS
from torchrl_flowmbpo.diagnostics.gradients import (
    action_gradient_accuracy,
    make_exact_real_gradient,
    make_real_return,
)
from torchrl_flowmbpo.diagnostics.returns import (
    collect_rollouts,
    critic_vs_returns,
    exploitation_gap,
    horizon_return_gap,
)
from torchrl_flowmbpo.diagnostics.warm_start import ControllerPrefill, behaviour_cloning_step
from torchrl_flowmbpo.diagnostics.world_model import imagination_vs_real, termination_calibration
from torchrl_flowmbpo.envs import make_env
from torchrl_flowmbpo.envs.locomotion import task_kwargs

__all__ = ["Instrumentation", "make_exact_gradient_check"]


def make_exact_gradient_check(
    cfg: DictConfig, world_model, reward_norm
) -> Callable[[TensorDictBase], dict[str, float]] | None:
    """``check(batch) -> metrics``: the world model's gradient of the H-step return w.r.t.
    random action sequences U[-0.5, 0.5] against the exact one of the task's differentiable
    simulator, from the first state of each env of a collected batch; None when
    ``diagnostics.exact_gradient`` is off.

    Raises:
        ValueError: when it is on for a task without a differentiable simulator.
    """
    if not cfg.diagnostics.exact_gradient:
        return None
    if "differentiable" not in task_kwargs(cfg.env.name):
        raise ValueError(
            f"diagnostics.exact_gradient=true needs a differentiable simulator; task "
            f"{cfg.env.name!r} has none (tasks with one: cartpole)."
        )
    kwargs = {**OmegaConf.to_container(cfg.env.kwargs, resolve=True), "differentiable": True}
    env = make_env(
        cfg.env.name, num_envs=cfg.env.num_envs, device=cfg.device, seed=cfg.seed + 4000, **kwargs
    )
    exact = make_exact_real_gradient(env, gamma=cfg.algo.gamma)
    real_return = make_real_return(env, gamma=cfg.algo.gamma)
    generator = torch.Generator(device=cfg.device).manual_seed(cfg.seed + 4000)

    def check(batch: TensorDictBase) -> dict[str, float]:
        observations = batch.get("observation")[:, 0]
        shape = (observations.shape[0], cfg.algo.horizon, env.action_spec.shape[-1])
        actions = torch.rand(shape, generator=generator, device=cfg.device) - 0.5
        result = action_gradient_accuracy(
            world_model,
            observations,
            actions,
            real_return,
            gamma=cfg.algo.gamma,
            reward_scale=float(reward_norm.scale),
            reward_loc=float(reward_norm.loc),
            real_gradient=exact,
        )
        return scalar_metrics(result, METRIC_PREFIXES["exact_action_gradient"])

    return check


class Instrumentation:
    """The research hooks of one PWM run, from ``cfg.diagnostics`` and ``cfg.research``.

    Args:
        cfg: the run's config.
        make_task_env: ``make_task_env(env_spec, num_envs=, device=, seed=)``, the run's env
            factory (the checks' extra simulators are the run's task).
        env_spec: the task's name and keyword arguments.
    """

    def __init__(self, cfg: DictConfig, make_task_env: Callable[..., Any], env_spec: dict) -> None:
        self.cfg, self.make_task_env, self.env_spec = cfg, make_task_env, env_spec
        self.exact_gradient_check: Callable[[TensorDictBase], dict[str, float]] | None = None
        self._pending: dict[str, float] = {}
        self._critic_check: dict[str, Any] = {}
        self._probe_env = None

    def build(self, world_model, reward_norm) -> None:
        """Builds what must exist before training (the exact-gradient simulator).

        Raises:
            ValueError: for ``diagnostics.exact_gradient`` on a task without a differentiable
                simulator.
        """
        self.exact_gradient_check = make_exact_gradient_check(self.cfg, world_model, reward_norm)

    def sampling_policy(
        self, policy: TensorDictModuleBase, init_frames: int
    ) -> tuple[TensorDictModuleBase, int]:
        """The collector's policy and uniform random frames: ``research.init_controller``'s
        scripted actions replace the random ones on the first ``init_frames`` frames."""
        research = self.cfg.research
        if research.init_controller is None or not init_frames:
            return policy, init_frames
        controller = REFERENCE_CONTROLLERS[self.env_spec["name"]][research.init_controller]
        prefill = ControllerPrefill(
            policy, controller(), frames=init_frames, noise_std=research.init_controller_noise
        )
        return prefill, 0  # the controller, not uniform random actions, fills them

    def register(self, trainer, *, actor, critic, policy, optimizers) -> None:
        """Registers the hooks that are switched on with ``trainer.register_op``."""
        self.trainer, self.actor, self.critic, self.policy = trainer, actor, critic, policy
        self.optimizers = optimizers
        research, diagnostics = self.cfg.research, self.cfg.diagnostics
        if research.actor_bc_steps:
            trainer.register_op("warm_up", self.clone_actions)
        if research.critic_warmup_steps:
            trainer.register_op("warm_up", self.warm_up_critic)
        if diagnostics.interval:
            trainer.register_op("batch_process", self.check_batch)
            trainer.register_op("post_optim", self.check_update)
        if diagnostics.critic_tail_tolerance > 0:
            trainer.register_op("post_eval", self.critic_diagnostics)
        if diagnostics.probe_steps > 0:
            trainer.register_op("post_eval", self.probe_diagnostics)

    def clone_actions(self) -> None:
        """``research.actor_bc_steps`` actor steps cloning the replay's actions."""
        trainer = self.trainer
        for _ in tqdm(range(self.cfg.research.actor_bc_steps), desc="actor cloning", leave=False):
            batch = sample_slices(trainer.replay_buffer, trainer.wm_batch_slices, trainer.horizon)
            behaviour_cloning_step(
                trainer.world_model, self.actor, self.optimizers["actor"], batch.reshape(-1)
            )

    def warm_up_critic(self) -> None:
        """Critic-only steps: the first actor steps then follow a critic fitted to the initial
        policy, not a random network."""
        steps = self.cfg.research.critic_warmup_steps
        for _ in tqdm(range(steps), desc="critic warm-up", leave=False):
            self.trainer.actor_critic_step(update_actor=False)

    def check_batch(self, data: TensorDictBase) -> None:
        """The checks on the fresh batch, held out: the model has not trained on it yet."""
        trainer, algo = self.trainer, self.cfg.algo
        iteration = trainer.counters["iteration"] + 1
        self._pending = {}
        if trainer.buffer_frames <= trainer.init_random_frames:
            return
        if iteration % self.cfg.diagnostics.interval:
            return
        scale = float(trainer.reward_norm.scale)
        world_model = trainer.world_model
        checks = {
            "imagination_vs_real": imagination_vs_real(
                world_model, data, horizon=algo.horizon, reward_scale=scale
            ),
            "termination_calibration": termination_calibration(world_model, data),
            "horizon_return_gap": horizon_return_gap(
                world_model,
                self.actor,
                data,
                horizon=algo.horizon,
                gamma=algo.gamma,
                reward_scale=scale,
            ),
        }
        for name, result in checks.items():
            self._pending.update(scalar_metrics(result, METRIC_PREFIXES[name]))
        if self.exact_gradient_check is not None:
            self._pending.update(self.exact_gradient_check(data))
        self._pending["_batch_reward_mean"] = float(data.get(("next", "reward")).mean())

    def check_update(self, metrics: dict[str, float], data: TensorDictBase) -> dict[str, float]:
        """After an iteration with batch checks: the exploitation gap and the updated actor's
        gradient split into the model's reward part and the critic's bootstrap part (no update;
        one replay sample and one rollout of RNG)."""
        if not self._pending:
            return {}
        pending, self._pending = self._pending, {}
        scale = float(self.trainer.reward_norm.scale)
        gap = exploitation_gap(
            metrics["actor/imagined_return"],
            pending.pop("_batch_reward_mean"),
            gamma=self.cfg.algo.gamma,
            reward_scale=scale,
        )
        split = actor_gradient_split(self.trainer.actor_loss, self.trainer.sample_start_states())
        return {
            **pending,
            **scalar_metrics(gap, METRIC_PREFIXES["exploitation_gap"]),
            **scalar_metrics(split, METRIC_PREFIXES["actor_gradient_split"]),
        }

    def critic_diagnostics(self, metrics: dict[str, float]) -> dict[str, float]:
        """V(E(o_t)) vs the real discounted return of the stochastic policy, every state scored.

        The check's env runs past the task's time limit by ``extra − 1`` steps, with ``γ^extra <=
        tolerance``: then every state of an ordinary-length episode has an unobserved return
        weight of at most the tolerance, and none of the extra steps' states is scored (scoring
        only a window's first steps would score near-identical start states).
        """
        cfg, trainer = self.cfg, self.trainer
        tolerance, gamma = cfg.diagnostics.critic_tail_tolerance, cfg.algo.gamma
        check = self._critic_check
        if not check:
            evaluator = trainer.evaluate
            length = evaluator.env.base_env.episode_length
            window = length - 1 + math.ceil(math.log(tolerance) / math.log(gamma))
            kwargs = {**self.env_spec["kwargs"], "episode_length": window}
            check["window"] = window
            check["env"] = self.make_task_env(
                {**self.env_spec, "kwargs": kwargs},
                num_envs=evaluator.num_envs,
                device=cfg.device,
                seed=cfg.seed + 2000,
            )
        with torch.no_grad():
            rollouts = collect_rollouts(check["env"], self.policy, check["window"])
            result = critic_vs_returns(
                self.critic,
                trainer.world_model,
                rollouts,
                gamma=gamma,
                reward_scale=float(trainer.reward_norm.scale),
                tail_tolerance=tolerance,
            )
        return scalar_metrics(result, METRIC_PREFIXES["critic_vs_returns"])

    def probe_diagnostics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Real vs the model's returns of the reference behaviours, fixed start states."""
        cfg, norm = self.cfg, self.trainer.reward_norm
        seed = cfg.seed + 3000
        if self._probe_env is None:
            self._probe_env = self.make_task_env(
                self.env_spec, num_envs=cfg.diagnostics.probe_envs, device=cfg.device, seed=seed
            )
        result = reference_probe(
            self.trainer.world_model,
            self._probe_env,
            self.policy,
            self.env_spec["name"],
            horizons=[cfg.diagnostics.probe_steps],
            seed=seed,
            reward_scale=float(norm.scale),
            reward_loc=float(norm.loc),
        )
        return scalar_metrics(result, METRIC_PREFIXES["behaviour_probe"])
