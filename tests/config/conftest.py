"""Composition of ``configs/`` through Hydra's compose API, with or without the schema."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from torchrl_flowmbpo.config import CONFIG_DIR, register_configs
from torchrl_flowmbpo.config.schema import GROUP_SCHEMAS, RUN_SCHEMAS


def _compose(config_name: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


@pytest.fixture
def compose_config() -> Callable[..., DictConfig]:
    """``compose_config(config_name, *overrides)``: a config of configs/ through the schema."""
    return _compose


@pytest.fixture
def compose_without_schema() -> Callable[..., DictConfig]:
    """Composes the YAML files alone: every schema node replaced by an empty one meanwhile."""
    store = ConfigStore.instance()

    def compose_plain(config_name: str, *overrides: str) -> DictConfig:
        for name in RUN_SCHEMAS:
            store.store(name=name, node={})
        for group, options in GROUP_SCHEMAS.items():
            for name in options:
                store.store(group=f"schema/{group}", name=name, node={})
        try:
            return _compose(config_name, *overrides)
        finally:
            register_configs()

    return compose_plain
