"""The ``checkpoint`` keys of every entry point: bad values are refused at start-up, one line."""

from __future__ import annotations

import pytest

from torchrl_flowmbpo.config import CONFIG_DIR
from torchrl_flowmbpo.config.entry import check_command_line

#: (override, the value as refused, what is allowed)
BAD = [
    ("checkpoint.every_minutes=0", "0.0", "a finite number > 0."),
    ("checkpoint.every_minutes=abc", "'abc'", "a number."),
    ("checkpoint.keep_last=0", "0", "an integer >= 1."),
    ("checkpoint.max_buffer_mb=-1", "-1.0", "a finite number >= 0."),
    ("checkpoint.max_skipped_iterations=0", "0", "an integer >= 1."),
]


@pytest.mark.parametrize(("override", "shown", "allowed"), BAD)
@pytest.mark.parametrize("config_name", ["config", "sac", "pretrain"])
def test_bad_checkpoint_values_are_refused_in_one_line(config_name, override, shown, allowed):
    extra = ["dataset.path=/nonexistent"] if config_name == "pretrain" else []
    key = override.split("=")[0]
    expected = f"{key}={shown} is not allowed; allowed: {allowed}"
    assert check_command_line(CONFIG_DIR, config_name, [override, *extra]) == expected
