"""The README a new user reads: every command of its shell blocks runs as shown, in
order, in a fresh copy of the tree as `make demo` leaves it, at an 80-column terminal,
and ends with the status the README gives it (0, or N where its comment says
`status N`) printing what its console blocks show. The blocks it marks as not run are
exactly the two that need root or the network; it links to nothing outside the
repository; its code blocks fit 80 columns.

The README's conventions, read here: a ```sh block holds commands, one a line (`#`
lines are comments, a trailing `\\` continues a line); a ```console block holds `$ `
commands, each followed by the output shown, where `...` stands for lines left out;
`<!-- not run by tests/test_readme.py: WHY -->` just before a block marks it; a command
that starts with `. ` is sourced by the shell, so every later command runs after it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.oracles import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = (README, *sorted((REPO_ROOT / "docs").glob("*.md")))
NOT_RUN_MARK = "not run by tests/test_readme.py: "
# The blocks a test cannot run, by their first command, and what their mark must say.
NOT_RUN = {"apt-get update": "root and the network", "python3 -m venv": "the network"}
BLOCK = re.compile(r"^(?:<!-- (?P<mark>[^\n]*?) -->\n)?```(?P<lang>\S*)\n(?P<body>.*?)^```$",
                   re.MULTILINE | re.DOTALL)
SHELL_BLOCKS = ("sh", "console")
OTHER_BLOCKS = ("text",)  # not commands: the layout
EXPECTED_STATUS = re.compile(r"#.*\bstatus (\d+)\b")
LEFT_OUT = "..."
TERMINAL = (24, 80)  # rows, columns: what the README's output was shown at
COMMAND_TIMEOUT = 600  # seconds; bench and minikern's runs are the longest
# Escape sequences rich writes to a terminal (colours, the cursor, links), not text.
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


@dataclass
class Command:
    line: str
    shown: list[str] | None = None  # a console block's output, None in a sh block

    @property
    def status(self) -> int:
        said = EXPECTED_STATUS.search(self.line)
        return int(said.group(1)) if said else 0


@dataclass
class Block:
    lang: str
    mark: str | None
    commands: list[Command] = field(default_factory=list)


def readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    for found in BLOCK.finditer(text):
        block = Block(found["lang"], found["mark"])
        if block.lang == "sh":
            block.commands = [Command(line) for line in sh_lines(found["body"])]
        elif block.lang == "console":
            block.commands = console_commands(found["body"])
        blocks.append(block)
    return blocks


def sh_lines(body: str) -> list[str]:
    joined = body.replace("\\\n", "")
    return [line for line in joined.splitlines() if line.strip()
            and not line.lstrip().startswith("#")]


def console_commands(body: str) -> list[Command]:
    commands: list[Command] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            commands.append(Command(line[2:], shown=[]))
        else:
            assert commands, f"output before any command in a console block: {line!r}"
            commands[-1].shown.append(line)
    return commands


# ---- the walk


def fresh_copy(target: Path) -> Path:
    """The repository's files as a clone has them (tracked, and new ones not ignored,
    as they are now), with the guests `make` built and .venv linked: the state in which
    `make demo` only patches and runs. Times are kept, so make sees what is built."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=REPO_ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_symlink() or source.is_file():  # not one deleted in the tree
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name, follow_symlinks=False)
    for built in ("build/guests", "build/src"):
        shutil.copytree(REPO_ROOT / built, target / built, symlinks=True)
    (target / ".venv").symlink_to(REPO_ROOT / ".venv")
    return target


def shell_environment() -> dict[str, str]:
    """The user's environment without pvtool already on PATH (an activated .venv) and
    without a size that would override the terminal's."""
    ours = {str(REPO_ROOT / ".venv" / "bin"), str(Path(sys.executable).parent)}
    env = {name: value for name, value in os.environ.items()
           if name not in ("VIRTUAL_ENV", "COLUMNS", "LINES", "PVTOOL_DEBUG")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p not in ours)
    env["TERM"] = "xterm-256color"
    return env


def run_at_terminal(script: str, cwd: Path) -> tuple[int, list[str]]:
    """Run SCRIPT with bash on a pseudo-terminal of TERMINAL's size; its exit status
    and the lines it showed, escape sequences removed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *TERMINAL, 0, 0))
    child = subprocess.Popen(["bash", "-c", script], cwd=cwd, env=shell_environment(),
                             stdin=slave, stdout=slave, stderr=slave,
                             start_new_session=True)
    os.close(slave)
    try:
        shown = read_until_closed(master, time.monotonic() + COMMAND_TIMEOUT)
    finally:
        os.close(master)
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    status = child.wait()
    text = ESCAPES.sub("", shown.decode(errors="replace")).replace("\r\n", "\n")
    return status, [line.rstrip() for line in text.split("\n")]


def read_until_closed(master: int, deadline: float) -> bytes:
    """Everything written to the terminal until its last writer closes it (read gives
    EIO), failing the test past DEADLINE."""
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            pytest.fail(f"still running after {COMMAND_TIMEOUT} s", pytrace=False)
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def missing_run(output: list[str], shown: list[str]) -> list[str] | None:
    """The first of SHOWN's runs of lines (split by `...`) that OUTPUT does not hold
    whole, in order after the runs before it; None when it holds them all."""
    runs = [[]]
    for line in shown:
        if line == LEFT_OUT:
            runs.append([])
        else:
            runs[-1].append(line.rstrip())
    at = 0
    for run in filter(None, runs):
        at = next((i + len(run) for i in range(at, len(output) - len(run) + 1)
                   if output[i:i + len(run)] == run), None)
        if at is None:
            return run
    return None


@pytest.fixture
def clone(tmp_path, guests):
    return fresh_copy(tmp_path / "clone")


def test_every_command_runs_as_the_readme_shows(clone):
    sourced = []
    walked = [c for block in readme_blocks() if block.lang in SHELL_BLOCKS
              and block.mark is None for c in block.commands]
    assert walked[0].line == "make demo"
    for command in walked:
        status, output = run_at_terminal("\n".join([*sourced, command.line]), clone)
        said = "\n".join(output)
        assert status == command.status, f"$ {command.line}\n{said}"
        if command.shown is not None:
            missing = missing_run(output, command.shown)
            assert missing is None, (f"$ {command.line}\nthe README shows, not printed:\n"
                                     + "\n".join(missing) + f"\nprinted:\n{said}")
        if command.line.startswith(". "):
            sourced.append(command.line)


# ---- what the walk leaves out, and the rest of the README's rules


def test_every_code_block_is_read():
    """A fence the walker's pattern missed would leave its commands unrun."""
    text = README.read_text()
    fences = re.findall(r"^\s*(?:```|~~~)", text, re.MULTILINE)
    assert len(fences) == 2 * len(BLOCK.findall(text))


def test_only_the_blocks_that_need_root_or_the_network_are_marked_not_run():
    marked = {}
    for block in readme_blocks():
        assert block.lang in SHELL_BLOCKS + OTHER_BLOCKS, f"a ```{block.lang} block"
        if block.mark is not None:
            assert block.mark.startswith(NOT_RUN_MARK), block.mark
            first = block.commands[0].line
            marked[next(k for k in NOT_RUN if first.startswith(k))] = block
    assert marked.keys() == NOT_RUN.keys()
    for start, block in marked.items():
        assert NOT_RUN[start] in block.mark
        script = "\n".join(c.line for c in block.commands)
        assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_links_and_file_names_stay_in_the_repository(doc):
    text = doc.read_text()
    assert not re.findall(r"\w+://", text), "a link outside the repository"
    for target in re.findall(r"\]\(([^)]+)\)", text):
        assert (doc.parent / target.split("#")[0]).exists(), target
    for named in re.findall(r"[\w./-]+\.md\b", text):
        assert named in ("README.md", "ABI.md", "ARCHITECTURE.md") or \
            (REPO_ROOT / named).is_file(), named


def test_code_blocks_fit_80_columns():
    for found in BLOCK.finditer(README.read_text()):
        for line in found["body"].splitlines():
            assert len(line) <= TERMINAL[1], line


def test_a_commands_expected_status_and_shown_output_are_read_as_meant():
    command = console_commands("$ pvtool run x  # status 1: why\na\n...\nc\n")[0]
    assert command.status == 1 and command.shown == ["a", "...", "c"]
    assert missing_run(["a", "b", "c"], command.shown) is None
    assert missing_run(["c", "b", "a"], command.shown) == ["c"]
    assert missing_run(["a", "b", "c"], ["a", "c"]) == ["a", "c"]  # a run is whole
    assert sh_lines("# a comment\none \\\n  two\n\nthree\n") == ["one   two", "three"]
