"""Structured configs of the Hydra entry points: schema, value checks and one-line errors."""

from torchrl_flowmbpo.config.entry import hydra_main
from torchrl_flowmbpo.config.renames import RENAMED_KEYS, upgrade_checkpoint
from torchrl_flowmbpo.config.schema import CONFIG_DIR, register_configs
from torchrl_flowmbpo.config.validate import ConfigError, describe_error, validate

__all__ = [
    "CONFIG_DIR",
    "RENAMED_KEYS",
    "ConfigError",
    "describe_error",
    "hydra_main",
    "register_configs",
    "upgrade_checkpoint",
    "validate",
]
