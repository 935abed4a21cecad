"""torchrl_flowmbpo: PWM-style model-based RL with (flow) world models, as TorchRL modules.

Subpackages: ``functional`` (symlog, two-hot), ``flows`` (paths and ODE integrators),
``modules`` (world models, actors, critic), ``envs`` (imagined env, locomotion tasks),
``objectives`` (PWM losses), ``transforms`` (reward normalisation), ``data`` (replay buffers,
collectors, offline datasets), ``trainers`` (training loops, checkpoints, evaluation, logs) and
``diagnostics`` (model-exploitation checks and research instrumentation, off by default).
"""

__version__ = "0.1.0"
