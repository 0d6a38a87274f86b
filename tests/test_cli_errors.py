"""One error style for every bad command line: click's own usage errors (an unknown
option, a missing argument, a value out of range) and pvtool's checks alike print one
`pvtool: error:` line naming the --help to read, and exit with 64 (EX_USAGE); --debug
works before or after the command."""

from pathlib import Path

import pytest

from pvtool.errors import UsageError
from tests.cli import patched_guest, pvtool
from tests.oracles import guest_path

EX_USAGE = 64
INPUT_MISSING, UNSUPPORTED_IMAGE, CANT_CREATE = 66, 69, 73


@pytest.fixture(scope="module")
def hello() -> Path:
    return guest_path("hello")


@pytest.fixture(scope="module")
def hello_pv(tmp_path_factory) -> Path:
    return patched_guest("hello", tmp_path_factory.mktemp("pv"))


@pytest.mark.parametrize(("args", "said", "help_of"), [
    (["--frob"], "no such option '--frob'", "pvtool"),
    (["nosuch"], "no such command 'nosuch'", "pvtool"),
    (["run", "--frob", "{hello}"], "no such option '--frob'", "pvtool run"),
    (["run"], "missing argument 'IMAGE'", "pvtool run"),
    (["run", "--memory", "2", "{hello}"], "'--memory': 2 is not in the range", "pvtool run"),
    (["run", "--max-insns", "many", "{hello}"], "'many' is not a valid integer",
     "pvtool run"),
    (["patch"], "missing argument 'IMAGE'", "pvtool patch"),
    (["diffstat"], "missing argument", "pvtool diffstat"),
    (["bench", "--repeat", "0"], "'--repeat': 0 is not in the range", "pvtool bench"),
])
def test_clicks_usage_errors_are_pvtools_line_and_status_64(hello, args, said, help_of):
    done = pvtool(*[arg.format(hello=hello) for arg in args])
    assert done.status == EX_USAGE == UsageError.exit_status
    line = done.error_line()
    assert said in line
    assert line.endswith(f"(see '{help_of} --help')")


def test_a_usage_error_in_a_real_process_is_the_same_line_and_status():
    done = pvtool("run", "--frob", process=True)
    assert done.status == EX_USAGE
    assert done.error_line() == ("pvtool: error: no such option '--frob' "
                                 "(see 'pvtool run --help')")


def test_a_bare_pvtool_prints_its_help_as_a_usage_error():
    done = pvtool()
    assert done.status == EX_USAGE
    assert done.stderr.startswith("Usage: pvtool [OPTIONS] COMMAND [ARGS]...")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command_shows_the_traceback(tmp_path, where):
    missing = tmp_path / "missing.elf"
    args = (["--debug", "run", missing] if where == "before"
            else ["run", missing, "--debug"])
    done = pvtool(*args)
    assert done.status == INPUT_MISSING
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.splitlines()[-1] == f"pvtool: error: {missing}: no such file"


@pytest.mark.parametrize(("value", "traceback"), [("1", True), ("0", False)])
def test_pvtool_debug_in_the_environment_is_debug(tmp_path, value, traceback):
    done = pvtool("run", tmp_path / "missing.elf", env={"PVTOOL_DEBUG": value})
    assert done.status == INPUT_MISSING
    assert ("Traceback (most recent call last)" in done.stderr) == traceback


# ---- run's options that cannot go together -----------------------------------------------

@pytest.mark.parametrize("modes", [("--native", "--trap"), ("--pv", "--native"),
                                   ("--trap", "--pv")])
def test_two_modes_are_a_usage_error_naming_both(hello, modes):
    done = pvtool("run", *modes, hello)
    assert done.status == EX_USAGE
    line = done.error_line()
    assert f"{modes[0]} and {modes[1]} exclude each other" in line


def test_snapshot_without_a_disk_is_refused(hello):
    done = pvtool("run", "--native", "--snapshot", hello)
    assert done.status == EX_USAGE
    assert "--snapshot" in done.error_line()


def test_the_same_disk_file_twice_is_refused_and_left_untouched(hello, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(range(256)) * 256)
    (tmp_path / "again.img").symlink_to(disk)
    before = disk.read_bytes()
    done = pvtool("run", "--native", "--disk", disk, "--disk", tmp_path / "again.img", hello)
    assert done.status == EX_USAGE
    assert "the same file as --disk" in done.error_line()
    assert disk.read_bytes() == before


@pytest.mark.parametrize("mode", ["--native", "--trap"])
def test_a_pv_image_on_the_bare_pc_says_so_and_to_drop_the_flag(hello_pv, mode):
    done = pvtool("run", mode, hello_pv)
    assert done.status == UNSUPPORTED_IMAGE
    line = done.error_line()
    assert "a PV image" in line and line.endswith(f"drop {mode}")


# ---- output paths are checked before the work ------------------------------------------

@pytest.mark.parametrize("args", [
    ["patch", "{hello}", "-o", "."],
    ["patch", "{hello}", "-o", "{dir}"],
    ["patch", "{hello}", "-o", "{dir}/out.elf", "--json", "{dir}"],
    ["patch", "{hello}", "-o", "{dir}/out.elf", "--json", "{dir}/no/such/r.json"],
    ["run", "--native", "--screen", "{dir}", "{hello}"],
    ["run", "--native", "--json", "{dir}", "{hello}"],
    ["run", "--native", "--json", "{dir}/no/such/r.json", "{hello}"],
    ["diffstat", "--json", "{dir}", "{hello}", "{hello}"],
])
def test_an_output_that_cannot_be_a_file_is_73_before_any_work(hello, tmp_path, args):
    done = pvtool(*[arg.format(hello=hello, dir=tmp_path) for arg in args])
    assert done.status == CANT_CREATE, done.output
    done.error_line()
    assert done.stdout == ""  # the guest never ran, nothing was measured
    assert list(tmp_path.iterdir()) == []
