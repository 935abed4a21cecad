"""torchrl_flowmbpo: PWM-style model-based RL with (flow) world models, as TorchRL modules.

Subpackages: ``functional`` (symlog, two-hot), ``flows`` (paths and ODE integrators),
``modules`` (world models, actors, critic), ``envs`` (imagined env, locomotion tasks),
``objectives`` (PWM losses), ``transforms`` (reward normalisation), ``diagnostics``
(model-exploitation checks) and ``recipes`` (builders, checkpoints, evaluation, updates).
"""

__version__ = "0.1.0"
