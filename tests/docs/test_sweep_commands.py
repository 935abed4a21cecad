"""The sweep commands of the docs compose: each `python examples/<script>.py -m ...` command in
docs/results.md, docs/benchmarks.md and docs/scaling.md, with the first value of every swept
key, prints its job config under `--cfg job` (Hydra composes it and runs nothing; a SLURM
command with device=cpu where no GPU is). The bash
sweep they replaced is named nowhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / name for name in ("results.md", "benchmarks.md", "scaling.md")]


def sweep_commands() -> list[str]:
    commands = []
    for doc in DOCS:
        for block in re.findall(r"```[a-z]*\n(.*?)```", doc.read_text(), re.S):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = line.split("#", 1)[0].strip()
                if re.match(r"python examples/\w+\.py -m ", line):
                    commands.append(line)
    return sorted(set(commands))


def single_run(command: str) -> list[str]:
    """The command's first run: `-m` dropped and each swept key at its first value."""
    words = command.split()[1:]
    words.remove("-m")
    return [re.sub(r"^([^=]+=)([^,\[]*),.*$", r"\1\2", word) for word in words]


def test_the_docs_have_sweep_commands():
    commands = sweep_commands()
    assert any("sac_baseline.py" in c for c in commands)
    assert any("sweep=slurm" in c for c in commands)


@pytest.mark.parametrize("command", sweep_commands())
def test_sweep_command_composes(command):
    args = single_run(command)
    if "sweep=slurm" in command:
        args.append("device=cpu")  # the SLURM bundle's device=cuda is refused on a CPU machine
    done = subprocess.run(
        [sys.executable, *args, "--cfg", "job"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "seed:" in done.stdout


def test_no_doc_names_the_bash_sweep():
    for doc in [*ROOT.joinpath("docs").glob("*.md"), ROOT / "README.md", ROOT / "CONTRIBUTING.md"]:
        assert "learning.sh" not in doc.read_text(), doc
