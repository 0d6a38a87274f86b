"""What a new user reads: every command's --help ends with examples, the group's help
lists the exit statuses (the same as README's table) and how to turn on shell
completion, and click's completion scripts come out of the documented variable."""

import re
import shutil
import subprocess

import pytest

from pvtool.cli.group import statuses
from pvtool.errors import GuestFault, exit_statuses
from tests.cli import pvtool
from tests.oracles import REPO_ROOT

COMMANDS = ("patch", "run", "diffstat", "bench")
AUTOMAKE_SKIPPED = 77  # automake's test driver reads it as "skipped" (its manual, 15.2)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_commands_help_ends_with_examples_of_itself(name):
    done = pvtool(name, "--help")
    assert done.status == 0
    lines = [line.strip() for line in done.stdout.rstrip("\n").splitlines()]
    # an example too long for 80 columns goes on in the next line, after a backslash
    text = "\n".join(lines[lines.index("Examples:") + 1:]).replace("\\\n", " ")
    examples = text.splitlines()
    assert examples and all(f"pvtool {name} " in line for line in examples)
    assert "--debug" in done.stdout  # accepted after the command too


@pytest.mark.parametrize("name", ("", *COMMANDS))
def test_each_help_fits_80_columns(name):
    """At 80 columns (issue 13, item 3) no line of a help wraps, examples included."""
    done = pvtool(*filter(None, [name, "--help"]), env={"COLUMNS": "80"})
    assert done.status == 0
    too_long = [line for line in done.stdout.splitlines() if len(line) > 80]
    assert too_long == []


def test_the_groups_help_lists_every_status_and_completion():
    done = pvtool("--help")
    assert done.status == 0
    listed = re.findall(r"^  (\d+) ", done.stdout.split("Exit status:")[1], re.MULTILINE)
    assert [int(s) for s in listed] == [status for status, _ in statuses()]
    assert "_PVTOOL_COMPLETE=bash_source pvtool" in done.stdout


def test_readmes_exit_status_table_is_the_codes():
    readme = (REPO_ROOT / "README.md").read_text().split("## Exit status")[1]
    table = re.findall(r"^\| (\d+) \|", readme.split("\n\n")[1], re.MULTILINE)
    assert [int(s) for s in table] == [status for status, _ in statuses()]


def test_a_crashed_guest_is_not_automakes_skipped_status():
    assert GuestFault.exit_status != AUTOMAKE_SKIPPED
    assert AUTOMAKE_SKIPPED not in {status for status, _ in exit_statuses()}


@pytest.mark.parametrize(("shell", "marker"), [
    ("bash", "complete -o nosort -F _pvtool_completion pvtool"),
    ("zsh", "#compdef pvtool"),
    ("fish", "complete --no-files --command pvtool"),
])
def test_the_completion_variable_prints_the_shells_script(shell, marker):
    done = pvtool(process=True, env={"_PVTOOL_COMPLETE": f"{shell}_source"})
    assert done.status == 0
    assert marker in done.stdout


def test_bash_loads_the_script_and_completes_a_command_and_an_option():
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    script = pvtool(process=True, env={"_PVTOOL_COMPLETE": "bash_source"}).stdout
    registered = subprocess.run(["bash", "-c", f"{script}\ncomplete -p pvtool"],
                                capture_output=True, text=True, check=True).stdout
    assert "_pvtool_completion" in registered
    asked = {"COMP_WORDS": "pvtool ru", "COMP_CWORD": "1", "_PVTOOL_COMPLETE": "bash_complete"}
    assert pvtool(process=True, env=asked).stdout.split() == ["plain,run"]
    asked.update(COMP_WORDS="pvtool run --tra", COMP_CWORD="2")
    completions = pvtool(process=True, env=asked).stdout.split()
    assert set(completions) == {"plain,--trap", "plain,--trace", "plain,--trace-int"}
