"""Every resolved configuration key that differs between two runs, checkpoints or bundles.

    python -m torchrl_flowmbpo.compare RUN_DIR_A RUN_DIR_B
    python -m torchrl_flowmbpo.compare run/checkpoints/checkpoint-000000000080.torchrl other/
    python -m torchrl_flowmbpo.compare experiment=baseline experiment=flow_wm
    python -m torchrl_flowmbpo.compare flow_run/ "experiment=flow_wm world_model.flow_steps=4"

A source is a run directory (its ``config.yaml``, else Hydra's ``.hydra/config.yaml``), a
checkpoint (the configuration its manifest records; an old ``.pt`` file is loaded
weights-only), a YAML file, or Hydra
overrides of ``configs/config.yaml`` (any argument holding ``=``; a bundle is
``experiment=NAME``). One line per differing key, ``key: A -> B``; ``(absent)`` marks a key
only one side has. Hydra's own ``hydra.*`` keys are ignored.

Examples:
    >>> differing_keys({"seed": 0, "algo": {"horizon": 16, "gamma": 0.99}},
    ...                {"seed": 1, "algo": {"horizon": 16}, "variant": "x"})
    [('algo.gamma', 0.99, '(absent)'), ('seed', 0, 1), ('variant', '(absent)', 'x')]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torchrl.checkpoint import Checkpoint, CheckpointError

from torchrl_flowmbpo.config import CONFIG_DIR, register_configs
from torchrl_flowmbpo.config.renames import ADDED_KEYS
from torchrl_flowmbpo.provenance import CONFIG_FILE
from torchrl_flowmbpo.serialization import UnreadableFileError, load_weights_only

__all__ = [
    "ABSENT",
    "ConfigSourceError",
    "differing_across",
    "differing_keys",
    "flatten",
    "load_config",
    "main",
]

ABSENT = "(absent)"


class ConfigSourceError(ValueError):
    """A source that holds no readable configuration."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b.c": value}``; lists and scalars are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def differing_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, value in a, value in b)`` for every dotted key whose values differ, sorted."""
    flat_a, flat_b = flatten(a), flatten(b)
    keys = sorted(k for k in flat_a.keys() | flat_b.keys() if not k.startswith("hydra."))
    rows = [(k, flat_a.get(k, ABSENT), flat_b.get(k, ABSENT)) for k in keys]
    return [row for row in rows if row[1] != row[2]]


def differing_across(
    configs: Mapping[str, Mapping[str, Any]], allowed: Sequence[str] = ("seed",)
) -> dict[str, dict[str, Any]]:
    """Keys whose values differ among several configs: ``{key: {name: value}}``.

    ``allowed`` keys (e.g. the seed, in a group of seeds of one variant) and Hydra's keys are
    not reported. A key that a config lacks (a run from before the key existed) counts as the
    value runs had before it: :data:`~torchrl_flowmbpo.config.renames.ADDED_KEYS`' value, else
    null (keys are added as null when null keeps the old behaviour), so the seeds of one
    variant run at two commits still form one group.

    Examples:
        >>> differing_across({"s0": {"seed": 0, "lr": 1}, "s1": {"seed": 1, "lr": 2}})
        {'lr': {'s0': 1, 's1': 2}}
        >>> differing_across({"old": {"lr": 1}, "new": {"lr": 1, "offline_data": None}})
        {}
    """
    flat = {name: flatten(config) for name, config in configs.items()}
    keys = sorted(set().union(*flat.values())) if flat else []
    report = {}
    for key in keys:
        if key in allowed or key.startswith("hydra."):
            continue
        values = {name: tree.get(key, ABSENT) for name, tree in flat.items()}
        before = ADDED_KEYS.get(key)
        effective = {repr(before if value is ABSENT else value) for value in values.values()}
        if len(effective) > 1:
            report[key] = values
    return report


def _compose(overrides: list[str], config_dir: Path) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    register_configs()
    try:
        with initialize_config_dir(str(config_dir.resolve()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    except HydraException as err:
        raise ConfigSourceError(f"Cannot compose {' '.join(overrides)!r}: {err}") from err
    return OmegaConf.to_container(cfg, resolve=True)


def _from_checkpoint(path: Path) -> dict[str, Any]:
    if path.suffix != ".pt":  # a checkpoint-<step>.torchrl: the manifest records the config
        try:
            metadata = Checkpoint.manifest(path)["metadata"]
        except (CheckpointError, OSError, ValueError) as err:
            raise ConfigSourceError(f"{path} is not a readable checkpoint: {err}") from err
        if not isinstance(metadata.get("config"), Mapping):
            raise ConfigSourceError(f"{path} records no config (not a checkpoint of ours).")
        return dict(metadata["config"])
    try:  # a checkpoint_<iteration>.pt of earlier versions
        state = load_weights_only(path)
    except UnreadableFileError as err:
        raise ConfigSourceError(str(err)) from err
    if not isinstance(state, Mapping) or not isinstance(state.get("config"), Mapping):
        raise ConfigSourceError(f"{path} holds no 'config' entry (not a checkpoint of ours).")
    return dict(state["config"])


def load_config(source: str, config_dir: str | os.PathLike = CONFIG_DIR) -> dict:
    """The resolved configuration of ``source`` (see the module docstring for the kinds)."""
    path = Path(source)
    if path.is_dir():
        for candidate in (path / CONFIG_FILE, path / ".hydra" / "config.yaml"):
            if candidate.is_file():
                return OmegaConf.to_container(OmegaConf.load(candidate), resolve=True)
        raise ConfigSourceError(
            f"Run directory {path} has neither {CONFIG_FILE} nor .hydra/config.yaml."
        )
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        return _from_checkpoint(path)
    if "=" in source:
        return _compose(shlex.split(source), Path(config_dir))
    raise ConfigSourceError(
        f"{source!r} is not a run directory, a checkpoint, a YAML file or Hydra overrides "
        "(e.g. experiment=flow_wm)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; prints the differing keys and returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m torchrl_flowmbpo.compare",
        description="Resolved configuration keys that differ between two sources.",
    )
    parser.add_argument("a", help="run directory, checkpoint, YAML file or Hydra overrides")
    parser.add_argument("b", help="the same kinds as A")
    parser.add_argument(
        "--config-dir",
        default=str(CONFIG_DIR),
        help="Hydra config directory for override sources (default: the repository's configs/)",
    )
    args = parser.parse_args(argv)
    try:
        rows = differing_keys(
            load_config(args.a, args.config_dir), load_config(args.b, args.config_dir)
        )
    except ConfigSourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not rows:
        print("No resolved key differs.")
    for key, value_a, value_b in rows:
        print(f"{key}: {value_a!r} -> {value_b!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
