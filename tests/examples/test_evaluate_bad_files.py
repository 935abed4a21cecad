"""examples/evaluate.py refuses every bad file with one line (exit 2, no traceback) that names the
file and what is wrong; a file holding code names the blocked global and never advises loading
it unsafely. No simulator is built for any of them."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import pytest
import torch


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _bad_files(tmp, make_checkpoint):
    good = make_checkpoint(tmp / "good")
    truncated = tmp / "truncated" / "checkpoints" / "checkpoint-000000000007.torchrl"
    truncated.parent.mkdir(parents=True)
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    legacy = tmp / "legacy" / "checkpoint_5.pt"
    legacy.parent.mkdir()
    torch.save({"modules": {}, "counters": {"iteration": 5}}, legacy)
    files = {
        "bare tensor": (tmp / "tensor.pt", "holds a Tensor, not a torchrl_flowmbpo checkpoint"),
        "text": (tmp / "text.pt", "is not a torch file"),
        "empty": (tmp / "empty.pt", "is empty"),
        "code": (tmp / "code.pt", "holds code or objects that weights-only loading refuses"),
        "truncated": (truncated, "is not a torchrl_flowmbpo checkpoint"),
        "text archive": (tmp / "checkpoint-000000000001.torchrl", "not a torchrl_flowmbpo"),
        "legacy": (legacy, "torch.save format of torchrl_flowmbpo before torchrl.checkpoint"),
        "legacy run": (legacy.parent, "torch.save format"),
        "missing": (tmp / "missing.torchrl", "does not exist"),
        "no checkpoint": (tmp / "empty_run", "No checkpoint-<step>.torchrl file in"),
        "zip of something else": (tmp / "other.torchrl", "not a torchrl_flowmbpo checkpoint"),
    }
    torch.save(torch.ones(3), files["bare tensor"][0])
    files["text"][0].write_text("101 lines of notes\n")
    files["empty"][0].write_bytes(b"")
    torch.save({"modules": Payload()}, files["code"][0])
    files["text archive"][0].write_text("hello")
    (tmp / "empty_run").mkdir()
    with zipfile.ZipFile(files["zip of something else"][0], "w") as archive:
        archive.writestr("readme.txt", "hi")
    return files


@pytest.fixture(scope="module")
def script(load_script):
    return load_script(Path(__file__).resolve().parents[2] / "examples" / "evaluate.py", "evaluate")


@pytest.fixture(scope="module")
def bad_files(scripts, tmp_path_factory):
    make_checkpoint = sys.modules[type(scripts).__module__].make_tiny_checkpoint
    return _bad_files(tmp_path_factory.mktemp("bad_files"), make_checkpoint)


@pytest.mark.parametrize(
    "case",
    [
        "bare tensor",
        "text",
        "empty",
        "code",
        "truncated",
        "text archive",
        "legacy",
        "legacy run",
        "missing",
        "no checkpoint",
        "zip of something else",
    ],
)
def test_every_bad_file_is_refused_with_one_line(script, bad_files, case, capsys, monkeypatch):
    path, want = bad_files[case]
    monkeypatch.setattr(script, "make_task_env", _no_simulator)
    with pytest.raises(SystemExit) as exit_:
        script.main([str(path), "--csv", str(path.parent / "rows.csv")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "weights_only" not in err
    (line,) = [s for s in err.splitlines() if s.startswith("evaluate.py")]
    assert path.name in line and want in line, line
    if case == "code":
        assert "blocked global: posix.system" in line or "blocked global: os.system" in line


def _no_simulator(*args, **kwargs):
    raise AssertionError("a simulator was built for a bad file")
