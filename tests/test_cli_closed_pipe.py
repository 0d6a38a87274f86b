"""A reader that closes pvtool's standard output (`pvtool run ... | head -1`) ends pvtool
quietly, with 141, the status a shell reports for a program SIGPIPE killed (README, "Exit
status"), as it does for `cat`: no internal error, nothing on stderr.

The pipe's read end is closed before pvtool starts, so its first write to stdout fails,
whatever the timing (with `head`, a short output can fit in the pipe before it closes).
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.cli import CHILD_TIMEOUT, command
from tests.oracles import REPO_ROOT, guest_path

CLOSED_PIPE_STATUS = 128 + signal.SIGPIPE


def with_closed_stdout(*args: object) -> subprocess.CompletedProcess:
    """Run pvtool ARGS with stdout a pipe nobody reads any more."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run(command(*args), cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                              stdout=writer, stderr=subprocess.PIPE,
                              timeout=CHILD_TIMEOUT, check=False)
    finally:
        os.close(writer)


@pytest.mark.parametrize("args", [
    ("run", "--native", guest_path("hello")),  # the guest's serial output
    ("--help",),  # written while the command line is parsed
    ("run", "--help"),  # the same, inside the command
], ids=["run", "help", "command-help"])
def test_a_closed_stdout_ends_pvtool_quietly_with_141(args):
    done = with_closed_stdout(*args)
    assert (done.returncode, done.stderr) == (CLOSED_PIPE_STATUS, b"")


def test_a_closed_stdout_after_patch_still_leaves_the_image(tmp_path):
    """`patch --json -` writes its files before the report goes to stdout."""
    out = tmp_path / "hello.pv.elf"
    done = with_closed_stdout("patch", guest_path("hello"), "-o", out, "--json", "-")
    assert (done.returncode, done.stderr) == (CLOSED_PIPE_STATUS, b"")
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "hello.pv.diff", "hello.pv.elf", "hello.pv.json"]
