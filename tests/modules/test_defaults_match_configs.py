"""The public modules' and losses' constructor defaults are the recommended settings of
``configs/``: a TorchRL script built from our modules gets them without passing anything.

The table below pairs each constructor argument with the config key it is built from
(``torchrl_flowmbpo.modules.builders`` passes the ``world_model``, ``actor`` and ``critic``
groups as keyword arguments; ``torchrl_flowmbpo.trainers.factories`` maps the ``algo`` keys of
``configs/algo/pwm.yaml`` onto the losses). Changing either side alone fails here.

Left out on purpose: ``world_model.preset`` (``small`` sizes CPU runs; the constructors default
to the reference "5M" sizes), ``algo.term_pos_weight`` (``balanced`` is a running estimate that
``TerminationBalance`` sets on the loss, not a constructor value) and the run keys
``world_model.pretrained`` / ``world_model.finetune`` (not constructor arguments).
"""

from __future__ import annotations

import inspect

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from torchrl_flowmbpo.config import CONFIG_DIR
from torchrl_flowmbpo.modules.actors import FlowActor, GaussianActor
from torchrl_flowmbpo.modules.critic import VCritic
from torchrl_flowmbpo.modules.models.flow_world_model import FlowWorldModel
from torchrl_flowmbpo.modules.models.policy_nets import (
    CriticEnsembleNet,
    FlowPolicyNet,
    GaussianPolicyNet,
)
from torchrl_flowmbpo.modules.models.world_model import LatentWorldModel
from torchrl_flowmbpo.objectives import PWMActorLoss, PWMValueLoss, WorldModelLoss
from torchrl_flowmbpo.transforms import RewardNormalization

#: Config groups chosen for each composition (PWM's loop: algo=pwm).
COMPOSITIONS = {
    "mlp": ("world_model=mlp", "actor=gaussian", "algo=pwm"),
    "flow": ("world_model=flow", "actor=flow", "algo=pwm"),
}

#: (composition, class, constructor argument, dotted config key). The world models' shared
#: arguments live in LatentWorldModel (PWMWorldModel and FlowWorldModel forward **kwargs to it).
TABLE = [
    # world_model/mlp.yaml -> PWMWorldModel (LatentWorldModel's arguments)
    ("mlp", LatentWorldModel, "reward_head", "world_model.reward_head"),
    ("mlp", LatentWorldModel, "termination_head", "world_model.termination_head"),
    ("mlp", LatentWorldModel, "term_bias_init", "world_model.term_bias_init"),
    # world_model/flow.yaml -> FlowWorldModel
    ("flow", LatentWorldModel, "reward_head", "world_model.reward_head"),
    ("flow", LatentWorldModel, "termination_head", "world_model.termination_head"),
    ("flow", LatentWorldModel, "term_bias_init", "world_model.term_bias_init"),
    ("flow", FlowWorldModel, "integrator", "world_model.integrator"),
    ("flow", FlowWorldModel, "flow_steps", "world_model.flow_steps"),
    ("flow", FlowWorldModel, "tau_sampling", "world_model.tau_sampling"),
    ("flow", FlowWorldModel, "project_simnorm", "world_model.project_simnorm"),
    ("flow", FlowWorldModel, "center_velocity", "world_model.center_velocity"),
    ("flow", FlowWorldModel, "time_embed_freqs", "world_model.time_embed_freqs"),
    ("flow", FlowWorldModel, "grad_checkpoint", "world_model.grad_checkpoint"),
    # actor/gaussian.yaml -> GaussianActor and its GaussianPolicyNet
    ("mlp", GaussianActor, "hidden", "actor.hidden"),
    ("mlp", GaussianActor, "init_log_std", "actor.init_log_std"),
    ("mlp", GaussianActor, "min_log_std", "actor.min_log_std"),
    ("mlp", GaussianActor, "detach_latent", "actor.detach_latent"),
    ("mlp", GaussianPolicyNet, "hidden", "actor.hidden"),
    ("mlp", GaussianPolicyNet, "init_log_std", "actor.init_log_std"),
    ("mlp", GaussianPolicyNet, "min_log_std", "actor.min_log_std"),
    ("mlp", GaussianPolicyNet, "detach_latent", "actor.detach_latent"),
    # actor/flow.yaml -> FlowActor and its FlowPolicyNet
    *[
        ("flow", cls, arg, f"actor.{arg}")
        for cls in (FlowActor, FlowPolicyNet)
        for arg in (
            "hidden",
            "init_log_std",
            "min_log_std",
            "detach_latent",
            "integrator",
            "flow_steps",
            "time_embed_freqs",
            "log_det",
            "velocity_init",
        )
    ],
    # critic/ensemble.yaml -> VCritic and its CriticEnsembleNet
    ("mlp", VCritic, "num_members", "critic.num_members"),
    ("mlp", VCritic, "hidden", "critic.hidden"),
    ("mlp", CriticEnsembleNet, "num_members", "critic.num_members"),
    ("mlp", CriticEnsembleNet, "hidden", "critic.hidden"),
    # algo/pwm.yaml -> the losses (trainers/factories.py: make_losses) and the reward transform
    ("mlp", WorldModelLoss, "horizon", "algo.horizon"),
    ("mlp", WorldModelLoss, "wm_rho", "algo.wm_rho"),
    ("mlp", WorldModelLoss, "dynamics_coef", "algo.dynamics_coef"),
    ("mlp", WorldModelLoss, "reward_coef", "algo.reward_coef"),
    ("mlp", WorldModelLoss, "termination_coef", "algo.termination_coef"),
    ("mlp", PWMActorLoss, "horizon", "algo.horizon"),
    ("mlp", PWMActorLoss, "gamma", "algo.gamma"),
    ("mlp", PWMActorLoss, "ret_rms", "algo.ret_rms"),
    ("mlp", PWMActorLoss, "entropy_coef", "algo.entropy_coef"),
    ("mlp", PWMValueLoss, "gamma", "algo.gamma"),
    ("mlp", PWMValueLoss, "lmbda", "algo.lmbda"),
    ("mlp", PWMValueLoss, "critic_target", "algo.critic_target"),
    ("mlp", PWMValueLoss, "target_critic", "algo.target_critic"),
    ("mlp", RewardNormalization, "mode", "algo.reward_norm"),
    ("mlp", RewardNormalization, "clip", "algo.reward_clip"),
]


@pytest.fixture(scope="module")
def configs() -> dict:
    composed = {}
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for name, overrides in COMPOSITIONS.items():
            cfg = compose(config_name="config", overrides=list(overrides))
            composed[name] = OmegaConf.to_container(cfg, resolve=True)
    return composed


def _lookup(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree[part]
    return tuple(tree) if isinstance(tree, list) else tree


@pytest.mark.parametrize(
    ("composition", "cls", "arg", "key"),
    TABLE,
    ids=[f"{c}-{cls.__name__}.{arg}" for c, cls, arg, _ in TABLE],
)
def test_constructor_default_is_the_config_value(configs, composition, cls, arg, key):
    parameter = inspect.signature(cls).parameters[arg]
    assert parameter.default is not inspect.Parameter.empty, f"{cls.__name__}.{arg}"
    expected = _lookup(configs[composition], key)
    default = parameter.default
    default = tuple(default) if isinstance(default, list) else default
    assert default == expected, f"{cls.__name__}.{arg}={default!r}, {key}={expected!r}"
    assert type(default) is type(expected) or {type(default), type(expected)} <= {int, float}


def test_every_actor_world_model_and_critic_key_is_in_the_table(configs):
    # A key added to a config group (other than the ones left out above) must join the table.
    left_out = {"world_model.type", "world_model.preset", "world_model.pretrained"}
    left_out |= {"world_model.finetune", "actor.type"}
    covered = {key for _, _, _, key in TABLE}
    for name in COMPOSITIONS:
        for group in ("world_model", "actor", "critic"):
            for key in configs[name][group]:
                dotted = f"{group}.{key}"
                assert dotted in covered or dotted in left_out, f"{name}: {dotted}"
