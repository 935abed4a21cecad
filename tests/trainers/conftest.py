"""Fixtures of the trainer tests: the updater drives the losses, so its tests build their tiny
world models, actors and critics with the objective tests' builders (``tests/objectives``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "objectives_builders", Path(__file__).resolve().parents[1] / "objectives" / "conftest.py"
)
_builders = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_builders)

#: ``models``: a fresh ``Builders`` per test; every test starts from seed 0 on one thread.
models = _builders.models
_seed_and_single_thread = _builders._seed_and_single_thread
