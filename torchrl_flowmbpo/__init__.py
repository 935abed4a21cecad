"""torchrl_flowmbpo: PWM-style model-based RL with (flow) world models, as TorchRL modules.

Subpackages: ``functional`` (symlog, two-hot), ``flows`` (paths and ODE integrators),
``modules`` (world models, actors, critic), ``envs`` (imagined env, locomotion tasks),
``objectives`` (PWM losses) and ``transforms`` (reward normalisation).
"""

__version__ = "0.1.0"
