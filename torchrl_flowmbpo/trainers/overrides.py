"""One-line diagnosis of bad command-line overrides, before Hydra's multi-line errors."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

__all__ = ["check_overrides"]


def _group_options(config_dir: Path, group: str) -> list[str]:
    folder = config_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def check_overrides(
    overrides: list[str], config_dir: str | Path, config_name: str = "config"
) -> str | None:
    """Returns a one-line message naming the first bad override and what is allowed, or None.

    Group selections (``env=ant``) must name an existing option of a group in
    ``config_name``'s defaults list; value overrides (``env.num_envs=4``) must name an existing
    key (``+key=value`` adds one on purpose).

    Args:
        overrides: the command line's ``key=value`` arguments.
        config_dir: the folder of the primary config and its groups.
        config_name: the primary config.
    """
    config_dir = Path(config_dir).resolve()
    parsed = OverridesParser.create().parse_overrides(overrides)
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        choices = compose(config_name=config_name, return_hydra_config=True).hydra.runtime.choices
    # Only the primary config's own groups: configs/ also holds groups other configs use.
    groups = {group for group in choices if "/" not in group}
    selections = []
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra") or override.is_add() or override.is_delete():
            continue
        options = _group_options(config_dir, key) if key in groups else []
        if options and "." not in key:
            value = override.value()
            if value not in options and value is not None and str(value) != "null":
                return f"Invalid override {key}={value}: allowed {key} options are {options}."
            selections.append(f"{key}={value}")
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=selections)
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra") or override.is_add() or override.is_delete():
            continue
        if key in groups and _group_options(config_dir, key) and "." not in key:
            continue
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig) or leaf not in parent:
            allowed = sorted(parent.keys()) if isinstance(parent, DictConfig) else []
            where = parent_key or "the top level"
            return (
                f"Invalid override {override.input_line}: unknown key {key!r}; "
                f"keys allowed in {where}: {allowed} (use +{key}=... to add one)."
            )
    return None
