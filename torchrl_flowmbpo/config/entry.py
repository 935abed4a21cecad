"""``hydra_main``: Hydra's entry-point decorator with the schema and one-line config errors."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from torchrl_flowmbpo.config.schema import register_configs
from torchrl_flowmbpo.config.validate import ConfigError, describe_error, validate
from torchrl_flowmbpo.provenance import finish_run

__all__ = ["check_command_line", "hydra_main"]

#: Command-line flags after which the overrides are not one run's (a sweep) or no run starts.
_NO_PREFLIGHT = ("-m", "--multirun", "-h", "--help", "--hydra-help", "-i", "--info")


def check_command_line(config_dir: str | Path, config_name: str, argv: Sequence[str]) -> str | None:
    """Composes ``config_name`` with the command line's overrides and validates it.

    Args:
        config_dir: the folder of the YAML files.
        config_name: the primary config (``config``, ``sac`` or ``pretrain``).
        argv: the command line after the script (Hydra's flags are skipped).

    Returns:
        One line naming the first bad key, its value and what is allowed, or None.

    Examples:
        >>> from torchrl_flowmbpo.config import CONFIG_DIR
        >>> check_command_line(CONFIG_DIR, "config", ["device=tpu"])
        "device='tpu' is not allowed; allowed: cpu, cuda or cuda:N."
        >>> check_command_line(CONFIG_DIR, "config", ["seed=1"]) is None
        True
    """
    register_configs()
    overrides = [arg for arg in argv if "=" in arg and not arg.startswith("-")]
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        try:
            cfg = compose(config_name=config_name, overrides=overrides)
        except Exception as err:  # Hydra and OmegaConf raise many types; each becomes one line
            return describe_error(err)
    try:
        validate(cfg)
    except ConfigError as err:
        return str(err)
    return None


def hydra_main(
    config_name: str, config_path: str = "../configs"
) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """``hydra.main`` for ``configs/``: the schema registered, every config error one line.

    Before Hydra starts (so before it makes a run directory), the command line is composed with
    the schema and validated; a bad key, type or value exits with one line
    ``Invalid configuration: <key>=<value> is not allowed; allowed: ...`` and status 1. The
    task function validates its config again, for sweeps (``-m``) and direct calls. Its
    :func:`~torchrl_flowmbpo.trainers.run_guard.guarded_run` records the start in the run's
    provenance (:mod:`torchrl_flowmbpo.provenance`) once it holds the run directory's lock; a
    task that returns has its start stamped finished here.

    Args:
        config_name: the primary config, as for ``hydra.main``.
        config_path: the config folder relative to the decorated function's file.

    Examples:
        >>> @hydra_main("config")  # doctest: +SKIP
        ... def main(cfg):
        ...     print(cfg.algo.horizon)
    """

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        config_dir = Path(inspect.getfile(task)).parent / config_path

        @functools.wraps(task)
        def validated(cfg: DictConfig) -> Any:
            try:
                validate(cfg)
            except ConfigError as err:
                sys.exit(f"Invalid configuration: {err}")
            result = task(cfg)  # its guarded_run records the start once it holds the lock
            # Not reached by a refused, failed or interrupted start.
            finish_run(HydraConfig.get().runtime.output_dir, cfg)
            return result

        run = hydra.main(version_base="1.3", config_path=config_path, config_name=config_name)(
            validated
        )

        @functools.wraps(task)
        def entry() -> Any:
            argv = sys.argv[1:]
            if not any(flag in argv for flag in _NO_PREFLIGHT):
                problem = check_command_line(config_dir, config_name, argv)
                if problem is not None:
                    sys.exit(f"Invalid configuration: {problem}")
            register_configs()
            return run()

        return entry

    return decorate
