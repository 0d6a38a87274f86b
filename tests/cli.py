"""pvtool's command line as the tests run it: one runner, `pvtool(*args)`, that gives
back the exit status, stdout and stderr apart.

By default the command runs in this process through click's test runner (no interpreter
start-up: the fuzzers run hundreds of commands). `process=True` runs `python -m pvtool`
in a child process instead, for what only a real process shows: the interpreter's own
exit status and output, signals, a second user; `installed=True` runs the console
script pip installed beside this interpreter, the command a user types. `command()`
is the child's argv, for a test that drives the process itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from pvtool.cli import cli
from tests.oracles import REPO_ROOT, guest_path

INSTALLED_PVTOOL = Path(sys.executable).with_name("pvtool")
ERROR_PREFIX = "pvtool: error: "  # README, "Exit status": pvtool's one error line
CHILD_TIMEOUT = 300  # seconds; the slowest command the suite runs takes a few


@dataclass(frozen=True)
class Ran:
    """How one pvtool command ended: its exit status and both streams, byte for byte."""

    status: int
    stdout_bytes: bytes
    stderr_bytes: bytes

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode(errors="backslashreplace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode(errors="backslashreplace")

    @property
    def output(self) -> str:
        """Both streams, for an assertion's message."""
        return self.stdout + self.stderr

    def error_line(self) -> str:
        """Check that stderr is exactly one line, pvtool's error line with no traceback,
        and return that line."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), self.stderr
        assert "Traceback" not in self.stderr and "Usage:" not in self.stderr
        return lines[0]


def patched_guest(name: str, folder: Path) -> Path:
    """build/guests/NAME.elf patched by `pvtool patch` into FOLDER/NAME.pv.elf (its
    listing diff beside it, NAME.pv.diff)."""
    out = folder / f"{name}.pv.elf"
    done = pvtool("patch", guest_path(name), "-o", out)
    assert done.status == 0, done.output
    return out


def command(*args: object, installed: bool = False) -> list[str]:
    """The argv of pvtool in a child process: `python -m pvtool ARGS`, or the installed
    console script."""
    program = [str(INSTALLED_PVTOOL)] if installed else [sys.executable, "-m", "pvtool"]
    return [*program, *map(str, args)]


def pvtool(*args: object, process: bool = False, installed: bool = False,
           wrapper: Sequence[str] = (), input: bytes | None = None,
           env: Mapping[str, str] | None = None, timeout: float = CHILD_TIMEOUT) -> Ran:
    """Run `pvtool ARGS` (each argument str()-ed) and return how it ended.

    In process unless `process` or `installed` asks for a child; `wrapper` is a command
    the child runs under (setpriv, to run as another user); `env` adds variables to the
    environment; `input` is stdin (empty by default). An exception that escapes the
    command in process fails the test with its traceback, as a crash would.
    """
    words = [str(arg) for arg in args]
    if not (process or installed or wrapper):
        result = CliRunner().invoke(cli, words, input=input, env=env, catch_exceptions=False)
        return Ran(result.exit_code, result.stdout_bytes, result.stderr_bytes)
    done = subprocess.run(
        [*wrapper, *command(*words, installed=installed)],
        cwd=REPO_ROOT,
        input=input or b"",
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)
