"""Issue 27: a resume that reads a large checkpoint (a big replay buffer) says so before the
seconds it takes; a small one stays quiet."""

from __future__ import annotations

import torch

from torchrl_flowmbpo.trainers import checkpointing
from torchrl_flowmbpo.trainers.checkpointing import RunCheckpoints


def test_a_large_checkpoint_announces_its_load(tmp_path, monkeypatch, capsys):
    checkpoints = RunCheckpoints(tmp_path)
    path = checkpoints.save({"run": {"w": torch.ones(2)}}, step=7)
    assert checkpoints.load_newest_valid()[0] == path
    assert capsys.readouterr().err == ""  # far below the threshold
    monkeypatch.setattr(checkpointing, "LOAD_MESSAGE_BYTES", path.stat().st_size)
    checkpoints.load_newest_valid()
    assert capsys.readouterr().err == f"Loading {path} (0 MB) ...\n"
