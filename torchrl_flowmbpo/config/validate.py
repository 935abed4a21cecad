"""Range, choice and cross-key checks of a composed config, and one-line config error messages.

Hydra and OmegaConf check types while composing (the schema of :mod:`.schema`);
:func:`validate` checks the values: each field's rule, then the keys that depend on each other
or on this machine (the task's keyword arguments, its reference controllers, the device).
Both kinds of error end as one line that names the key, the value and what is allowed.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from typing import Any

import torch
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from torchrl_flowmbpo.config.renames import RENAMED_KEYS
from torchrl_flowmbpo.envs.locomotion import task_kwarg_types, task_kwargs

__all__ = ["ConfigError", "describe_error", "validate"]

_DEVICE = re.compile(r"^(cpu|cuda)(:\d+)?$")


class ConfigError(ValueError):
    """A config value that is not allowed; the message is one line naming the key, the value
    and what is allowed."""


def _refuse(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not allowed; allowed: {allowed}.")


def _structured_nodes(node: DictConfig, prefix: str = "") -> Iterator[tuple[str, DictConfig]]:
    """``(key prefix, node)`` of every node typed by a schema dataclass, outermost first."""
    if is_dataclass(OmegaConf.get_type(node)):
        yield prefix, node
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none():
            yield from _structured_nodes(child, f"{prefix}{key}.")


def _check_rules(cfg: DictConfig) -> None:
    for prefix, node in _structured_nodes(cfg):
        schema = OmegaConf.get_type(node)
        names = {f.name for f in fields(schema)}
        for key in node:
            if key not in names:
                raise ConfigError(_unknown_key(f"{prefix}{key}", schema))
        for f in fields(schema):
            key = f"{prefix}{f.name}"
            if OmegaConf.is_missing(node, f.name):
                raise ConfigError(f"{key} has no value; set it in the YAML file or with {key}=...")
            rule = f.metadata.get("rule")
            if rule is not None and not rule.test(node[f.name]):
                raise _refuse(key, _plain(node[f.name]), rule.allowed)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _check_device(device: str) -> None:
    if not _DEVICE.match(device):
        raise _refuse("device", device, "cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            devices = ["cpu", *(f"cuda:{i}" for i in range(count))]
            raise _refuse("device", device, f"a device of this machine: {devices}")


def _has_type(value: Any, hint: Any) -> bool:
    if hint is float:  # an int is a float here, as in OmegaConf
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _check_task(cfg: DictConfig) -> None:
    env = cfg.env
    types = task_kwarg_types(env.name)
    for key, value in env.kwargs.items():
        if f"env.kwargs.{key}" in RENAMED_KEYS:
            raise ConfigError(_unknown_key(f"env.kwargs.{key}"))
        if key not in types:
            raise ConfigError(
                f"env.kwargs.{key} is not a keyword argument of task {env.name!r}; "
                f"allowed: {sorted(types)}."
            )
        if types[key] in _TYPE_WORDS and not _has_type(value, types[key]):
            raise _refuse(f"env.kwargs.{key}", _plain(value), _type_in_words(types[key]))


def _check_models(cfg: DictConfig) -> None:
    """Constraints between keys that the model and loss constructors would refuse later."""
    if "actor" in cfg and cfg.actor.init_log_std < cfg.actor.min_log_std:
        allowed = f"a value >= actor.min_log_std={cfg.actor.min_log_std} (the floor)"
        raise _refuse("actor.init_log_std", cfg.actor.init_log_std, allowed)
    algo = cfg.algo
    if "reward_clip" in algo and algo.reward_clip is not None and algo.reward_norm == "none":
        allowed = "null with algo.reward_norm=none (a clip of unnormalised rewards)"
        raise _refuse("algo.reward_clip", algo.reward_clip, allowed)


def _check_pwm(cfg: DictConfig) -> None:
    # Imported here: the controllers belong to the research diagnostics, not to the schema.
    from torchrl_flowmbpo.diagnostics.controllers import REFERENCE_CONTROLLERS

    differentiable = "differentiable" in task_kwargs(cfg.env.name)
    if cfg.algo.name == "shac" and not differentiable:
        raise _refuse("env.name", cfg.env.name, "a task with a differentiable simulator (cartpole)")
    window = cfg.env.num_envs * cfg.algo.horizon
    if cfg.algo.name == "shac" and cfg.collector.total_frames < window:
        allowed = f"at least one SHAC window: env.num_envs x algo.horizon = {window}"
        raise _refuse("collector.total_frames", cfg.collector.total_frames, allowed)
    if cfg.algo.name == "pwm" and cfg.world_model is None:
        raise _refuse("world_model", None, "mlp or flow (PWM learns a world model)")
    if cfg.diagnostics.exact_gradient and not differentiable:
        raise _refuse(
            "diagnostics.exact_gradient", True, "false on a task without a differentiable simulator"
        )
    controller = cfg.research.init_controller
    controllers = sorted(REFERENCE_CONTROLLERS.get(cfg.env.name, {}))
    if controller is not None and controller not in controllers:
        allowed = f"null (random actions) or a controller of task {cfg.env.name!r}: {controllers}"
        raise _refuse("research.init_controller", controller, allowed)


def validate(cfg: DictConfig) -> None:
    """Checks every key of a config composed with the schema; raises at the first bad value.

    Args:
        cfg: a config of ``configs/`` (``config``, ``sac`` or ``pretrain``), composed by Hydra
            after :func:`~torchrl_flowmbpo.config.register_configs`.

    Raises:
        ConfigError: one line naming the key, the value and what is allowed.

    Examples:
        >>> from hydra import compose, initialize_config_dir
        >>> from torchrl_flowmbpo.config import CONFIG_DIR, register_configs
        >>> register_configs()
        >>> with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        ...     cfg = compose(config_name="config", overrides=["env.num_envs=0"])
        >>> try:
        ...     validate(cfg)
        ... except ConfigError as err:
        ...     print(err)
        env.num_envs=0 is not allowed; allowed: an integer >= 1.
    """
    _check_rules(cfg)
    _check_device(cfg.device)
    if "env" in cfg:
        _check_task(cfg)
    if "sac" in cfg and cfg.collector.frames_per_batch % cfg.env.num_envs:
        raise _refuse(
            "collector.frames_per_batch",
            cfg.collector.frames_per_batch,
            f"a multiple of env.num_envs={cfg.env.num_envs}",
        )
    if "algo" in cfg:
        _check_models(cfg)
    if "algo" in cfg and "collector" in cfg:
        _check_pwm(cfg)
    if "steps" in cfg and cfg.dataset.path is None:
        raise _refuse("dataset.path", None, "a dataset directory (the option is required)")


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_OMEGACONF_TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "bool": "true or false"}
_PLURAL_WORDS = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}


def _type_in_words(hint: Any) -> str:
    args = typing.get_args(hint)
    if type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return f"{_type_in_words(inner[0])} or null"
    if typing.get_origin(hint) is list:
        return f"a list of {_PLURAL_WORDS.get(args[0], 'values')}"
    if typing.get_origin(hint) is dict:
        return "a mapping of names to values"
    return _TYPE_WORDS.get(hint, getattr(hint, "__name__", str(hint)))


def _unknown_key(key: str, schema: type | None = None) -> str:
    if key in RENAMED_KEYS:
        return f"{key} was renamed {RENAMED_KEYS[key]}."
    parent = key.rpartition(".")[0]
    allowed = sorted(f.name for f in fields(schema)) if schema is not None else []
    return f"{key} is not a key of {parent or 'the config'}; allowed keys: {allowed}."


def describe_error(error: Exception) -> str:
    """One line for an error Hydra or OmegaConf raised while composing a config.

    Args:
        error: the exception (Hydra's ``ConfigCompositionException`` with OmegaConf's error as
            its cause, a ``MissingConfigException`` for an unknown group option, or OmegaConf's
            own error).

    Examples:
        >>> from hydra import compose, initialize_config_dir
        >>> from torchrl_flowmbpo.config import CONFIG_DIR, register_configs
        >>> register_configs()
        >>> with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        ...     try:
        ...         compose(config_name="config", overrides=["seed=abc"])
        ...     except Exception as err:
        ...         print(describe_error(err))
        seed='abc' is not allowed; allowed: an integer.
    """
    if isinstance(error, MissingConfigException) and error.options:
        group, _, option = (error.missing_cfg_file or "").rpartition("/")
        return str(_refuse(group or "config", option, f"one of {sorted(error.options)}"))
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
    schema, key = getattr(cause, "object_type", None), getattr(cause, "key", None)
    full_key = getattr(cause, "full_key", None)
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and full_key:
        if is_dataclass(schema) or full_key in RENAMED_KEYS:
            return _unknown_key(full_key, schema)
        parent = full_key.rpartition(".")[0]
        return f"{full_key} is not a key of {parent}; add one with +{full_key}=..."
    if isinstance(cause, ValidationError) and full_key:
        hint = typing.get_type_hints(schema).get(key) if is_dataclass(schema) else None
        if hint is not None:
            return str(_refuse(full_key, cause.value, _type_in_words(hint)))
        for word, allowed in _OMEGACONF_TYPE_WORDS.items():  # an element of a list
            if word in str(cause):
                return str(_refuse(full_key, cause.value, allowed))
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if cause is not error:
        lines += [line.strip() for line in str(cause).splitlines()[:1]]
    return "; ".join(line.rstrip(".:") for line in lines[:2]) + "."
