"""Weights-only loading refuses bad files with one line naming the file and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchrl_flowmbpo.serialization import UnreadableFileError, load_weights_only


class _Payload:
    """An arbitrary object: pickling it stores a global that loading would import."""


def _malicious(path: Path) -> None:
    torch.save({"modules": {}, "payload": _Payload()}, path)


def _truncated(path: Path) -> None:
    torch.save({"w": torch.arange(1000.0)}, path)
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_text("a text file\n"), "is not a torch file"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (_truncated, "is truncated or corrupt"),
        (_malicious, "blocked global: tests.test_serialization._Payload"),
    ],
    ids=["text", "empty", "truncated", "malicious"],
)
def test_refusals_are_one_line(tmp_path: Path, make, reason) -> None:
    path = tmp_path / "c.pt"
    make(path)
    with pytest.raises(UnreadableFileError) as info:
        load_weights_only(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert str(path) in message and reason in message
    assert "weights_only" not in message and "False" not in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="does not exist"):
        load_weights_only(tmp_path / "none.pt")


def test_tensors_and_containers_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.ones(2), "n": [1, 2]}, path)
    state = load_weights_only(path)
    assert torch.equal(state["w"], torch.ones(2)) and state["n"] == [1, 2]
