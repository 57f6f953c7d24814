"""Every `nas` command in the README's runnable blocks works against a small finished run.

The README's ```bash blocks are user-facing commands. Lines starting with ``nas `` are run as
written, with ``runs/default`` pointing at a small finished run of the same shape (the digits
spec, shortened); a command that exits non-zero fails the test. Blocks that install software,
start the full default run or need a cluster are named in ``NOT_RUN`` with where they are
tested instead, so a new block is run unless someone says why not.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_pipeline import write_spec

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# First words of a block → why it is not run here (and where it is tested).
NOT_RUN = {
    "# 1. install": "installs the platform and runs the default experiment (CI's own setup)",
}
# The small run is the pipeline test's spec; its target stands in for the default's.
DEFAULT_TARGET, SMALL_TARGET = "cpu_fp32_b64", "cpu_fp32"


def bash_blocks(text: str) -> list[list[str]]:
    """The lines of every ```bash block, in order."""
    return [block.strip().splitlines() for block in re.findall(r"```bash\n(.*?)```", text, re.S)]


def readme_commands() -> list[str]:
    commands = []
    for block in bash_blocks(README.read_text()):
        if any(block[0].startswith(first) for first in NOT_RUN):
            continue
        commands += [line.strip() for line in block if line.strip().startswith("nas ")]
    return commands


def test_every_bash_block_is_run_or_says_why_not() -> None:
    blocks = bash_blocks(README.read_text())
    assert blocks
    for block in blocks:
        runs = any(line.strip().startswith("nas ") for line in block)
        skipped = any(block[0].startswith(first) for first in NOT_RUN)
        assert runs or skipped, (
            f"a ```bash block neither runs a nas command nor is in NOT_RUN: {block}"
        )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    spec = write_spec(root, output_dir=root / "runs" / "default", n_samples=16)
    done = subprocess.run(
        [sys.executable, "-m", "nas", "run", str(spec)],
        cwd=REPO,
        env={**os.environ, "RAY_ADDRESS": "local"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (root / "run.log").write_text(done.stdout + done.stderr)  # what `nas run > run.log` keeps
    return root


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command: str, finished_run: Path) -> None:
    argv = shlex.split(command.split("  #")[0])
    argv = [
        a.replace("runs/default", str(finished_run / "runs" / "default")).replace(
            DEFAULT_TARGET, SMALL_TARGET
        )
        for a in argv
    ]
    argv = argv[:2] + [str(finished_run / "runs") if a == "runs" else a for a in argv[2:]]
    done = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{command}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
    assert done.stdout.strip(), f"{command} printed nothing"


@pytest.mark.slow
@pytest.mark.ray
def test_a_logged_run_has_no_progress_redraws(finished_run: Path) -> None:
    """Written to a file, progress is whole lines (no carriage-return redraws, none very long)."""
    log = (finished_run / "run.log").read_text()
    assert "\r" not in log
    longest = max(log.splitlines(), key=len)
    assert len(longest) <= 500, longest[:600]
    assert re.search(r"^accuracy: \d+/\d+ subnet \(100%\)", log, re.M), log[-2000:]
