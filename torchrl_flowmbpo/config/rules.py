"""Range and choice rules of config keys, attached to the schema's dataclass fields.

Types are checked by OmegaConf when Hydra composes the config; a :class:`Rule` says which values
of the right type are allowed (``>= 1``, one of a few names), in words that the one-line error
message quotes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

__all__ = [
    "Rule",
    "at_least",
    "checked",
    "finite",
    "fraction",
    "number_at_least",
    "one_of",
    "optional",
    "positive",
    "positive_ints",
]


@dataclass(frozen=True)
class Rule:
    """Which values of a key are allowed: ``test(value)`` is true for them.

    Args:
        allowed: the allowed values in words, quoted by the error message.
        test: the check; it may assume the value has the field's type.

    Examples:
        >>> rule = at_least(1)
        >>> rule.allowed, rule.test(0), rule.test(3)
        ('an integer >= 1', False, True)
    """

    allowed: str
    test: Callable[[Any], bool]


def at_least(least: int) -> Rule:
    """An integer ``>= least``."""
    return Rule(f"an integer >= {least}", lambda v: v >= least)


def finite() -> Rule:
    """Any finite number (NaN and infinities are refused)."""
    return Rule("a finite number", math.isfinite)


def number_at_least(least: float) -> Rule:
    """A finite number ``>= least`` (NaN and infinities are refused)."""
    return Rule(f"a finite number >= {least:g}", lambda v: math.isfinite(v) and v >= least)


def positive() -> Rule:
    """A finite number ``> 0``."""
    return Rule("a finite number > 0", lambda v: math.isfinite(v) and v > 0)


def fraction(*, low_open: bool = False, high_open: bool = False) -> Rule:
    """A number in ``[0, 1]``, either end excluded on request."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return Rule(
        f"a number in {left}0, 1{right}",
        lambda v: (v > 0 if low_open else v >= 0) and (v < 1 if high_open else v <= 1),
    )


def one_of(choices: Iterable[str]) -> Rule:
    """One of the names in ``choices``."""
    names = tuple(choices)
    return Rule(f"one of {list(names)}", lambda v: v in names)


def positive_ints() -> Rule:
    """A non-empty list of integers ``>= 1`` (layer widths)."""
    return Rule("a non-empty list of integers >= 1", lambda v: len(v) > 0 and min(v) >= 1)


def optional(rule: Rule, meaning: str) -> Rule:
    """``rule``, or null meaning ``meaning``."""
    return Rule(f"{rule.allowed}, or null ({meaning})", lambda v: v is None or rule.test(v))


def checked(rule: Rule) -> Any:
    """A dataclass field that the YAML must set (no default) and ``rule`` checks.

    Examples:
        >>> from dataclasses import dataclass, fields
        >>> @dataclass
        ... class Eval:
        ...     episodes: int = checked(at_least(1))
        >>> fields(Eval)[0].metadata["rule"].allowed
        'an integer >= 1'
    """
    return dataclasses.field(default=MISSING, metadata={"rule": rule})
