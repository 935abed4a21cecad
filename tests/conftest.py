"""Fixtures shared by the whole suite."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from torchrl_flowmbpo.config import register_configs


@pytest.fixture(scope="session", autouse=True)
def _config_schema():
    # configs/*.yaml name their schema in their defaults lists; tests compose them directly.
    register_configs()


@pytest.fixture(autouse=True)
def _single_thread():
    # Tests share a 2-core machine; tiny tensors gain nothing from intra-op threads.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def load_script() -> Callable[[Path, str], ModuleType]:
    """Loads a script of ``examples/``, ``benchmarks/`` or ``studies/`` (folders of scripts, not
    packages).

    The module is registered in ``sys.modules`` under ``name`` first: dataclasses resolve a
    script's string annotations through it. Scripts that import their siblings (``from
    plain_pwm import ...``) find them through pytest's ``pythonpath`` (pyproject.toml), as
    ``python benchmarks/<name>.py`` finds them through the script's folder.
    """

    def load(path: Path, name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    return load
