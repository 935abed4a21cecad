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
    """Loads a script of ``examples/`` or ``benchmarks/`` (folders of scripts, not packages).

    The module is registered in ``sys.modules`` under ``name`` first: dataclasses resolve a
    script's string annotations through it.
    """

    def load(path: Path, name: str) -> ModuleType:
        # Scripts import their siblings (``from plain_pwm import ...``): run as
        # ``python benchmarks/<name>.py`` they find them through their folder, which Python
        # puts first on sys.path; do the same here.
        folder = str(Path(path).resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    return load
