"""`pvtool patch` through its command line: the input is never touched, every failure
is one line on stderr with its documented exit status (README, "Exit status") and
leaves no output, temporary file or traceback behind; the patched hello boots under
the hypervisor and prints what the original prints on the bare machine."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.cli import pvtool
from tests.oracles import REPO_ROOT, guest_path, require_tool


@pytest.fixture(scope="module")
def hello() -> Path:
    return guest_path("hello")


@pytest.fixture
def workdir(tmp_path, hello) -> Path:
    """A folder holding a copy of hello, as the only file."""
    shutil.copy2(hello, tmp_path / "hello.elf")
    return tmp_path


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ---- success ---------------------------------------------------------------------------


def test_patching_leaves_the_input_as_it_was(workdir):
    image = workdir / "hello.elf"
    before = image.read_bytes()
    stat = image.stat()
    result = pvtool("patch", image, "-o", workdir / "out.elf")
    assert result.status == 0, result.stderr
    assert image.read_bytes() == before
    assert image.stat().st_mtime_ns == stat.st_mtime_ns
    assert image.stat().st_mode == stat.st_mode
    assert sorted(listing(workdir)) == ["hello.elf", "out.diff", "out.elf", "out.json"]


def test_without_o_the_output_is_named_after_the_input(workdir):
    result = pvtool("patch", workdir / "hello.elf")
    assert result.status == 0, result.stderr
    assert sorted(listing(workdir)) == ["hello.elf", "hello.pv.diff", "hello.pv.elf",
                                        "hello.pv.json"]
    assert "wrote" in result.stdout
    assert (workdir / "hello.pv.elf").stat().st_mode & 0o777 == \
        (workdir / "hello.elf").stat().st_mode & 0o777


def test_patching_again_replaces_the_outputs_whole(workdir):
    image, out = workdir / "hello.elf", workdir / "out.elf"
    out.write_bytes(b"stale")
    out.with_suffix(".json").write_text("stale")
    assert pvtool("patch", image, "-o", out).status == 0
    first = listing(workdir)
    assert first["out.elf"][:4] == b"\x7fELF" and first["out.json"].startswith(b"{")
    assert pvtool("patch", image, "-o", out).status == 0
    assert listing(workdir) == first  # deterministic, and no temporary file left


# ---- failures ---------------------------------------------------------------------------


def broken_patch_set(folder: Path) -> Path:
    patch_set = folder / "broken-set"
    shutil.copytree(REPO_ROOT / "patches" / "xen32", patch_set)
    rules = patch_set / "rules.toml"
    rules.write_text(rules.read_text().replace('call = "pv_hlt"', 'call = "pv_nap"'))
    return patch_set


def bad_template_set(folder: Path) -> Path:
    patch_set = folder / "bad-template"
    shutil.copytree(REPO_ROOT / "patches" / "xen32", patch_set)
    glue = patch_set / "glue.asm"
    glue.write_text(glue.read_text().replace("mov dword ptr [{regs_cr4}], eax",
                                             "mov dword ptr [{regs_cr5}], eax"))
    return patch_set


def case_same_as_input(d):
    return ["patch", d / "hello.elf", "-o", d / "hello.elf"]


def case_same_file_by_another_path(d):
    (d / "sub").mkdir()
    return ["patch", d / "hello.elf", "-o", d / "sub" / ".." / "hello.elf"]


def case_diff_would_overwrite_input(d):
    shutil.copy2(d / "hello.elf", d / "out.diff")
    (d / "hello.elf").unlink()
    return ["patch", d / "out.diff", "-o", d / "out.elf"]


def case_missing_input(d):
    return ["patch", d / "nothing.elf", "-o", d / "out.elf"]


def case_not_elf(d):
    (d / "notes.txt").write_text("not an ELF file\n" * 10)
    return ["patch", d / "notes.txt", "-o", d / "out.elf"]


def case_truncated(d):
    data = (d / "hello.elf").read_bytes()
    (d / "cut.elf").write_bytes(data[:200])
    return ["patch", d / "cut.elf", "-o", d / "out.elf"]


def case_already_patched(d):
    assert pvtool("patch", d / "hello.elf", "-o", d / "pv.elf").status == 0
    for name in ("hello.elf", "pv.diff", "pv.json"):
        (d / name).unlink()
    return ["patch", d / "pv.elf", "-o", d / "out.elf"]


def case_output_directory_missing(d):
    return ["patch", d / "hello.elf", "-o", d / "no" / "such" / "out.elf"]


def case_listing_diff_is_a_directory(d):
    (d / "out.diff").mkdir()
    return ["patch", d / "hello.elf", "-o", d / "out.elf"]


def case_outputs_collide(d):
    return ["patch", d / "hello.elf", "-o", d / "out.json"]


def case_broken_patch_set(d):
    return ["patch", d / "hello.elf", "-o", d / "out.elf", "--patch-set", broken_patch_set(d)]


def case_unknown_name_in_glue(d):
    return ["patch", d / "hello.elf", "-o", d / "out.elf", "--patch-set", bad_template_set(d)]


def case_missing_patch_set(d):
    return ["patch", d / "hello.elf", "-o", d / "out.elf", "--patch-set", "no-such-set"]


FAILURES = {
    case_same_as_input: 73,
    case_same_file_by_another_path: 73,
    case_diff_would_overwrite_input: 73,
    case_missing_input: 66,
    case_not_elf: 65,
    case_truncated: 65,
    case_already_patched: 69,
    case_output_directory_missing: 73,
    case_listing_diff_is_a_directory: 73,
    case_outputs_collide: 73,
    case_broken_patch_set: 76,
    case_unknown_name_in_glue: 76,
    case_missing_patch_set: 66,
}


@pytest.mark.parametrize("case", FAILURES, ids=lambda case: case.__name__[5:])
def test_a_failure_is_one_line_a_status_and_no_output(workdir, case):
    args = case(workdir)
    before = listing(workdir)
    stats = {name: (workdir / name).stat().st_mtime_ns for name in before}
    result = pvtool(*args)
    assert result.status == FAILURES[case], (result.status, result.stderr)
    result.error_line()
    assert result.stdout == ""
    assert listing(workdir) == before  # no OUT, OUT.diff, OUT.json, nor temporary file
    assert {name: (workdir / name).stat().st_mtime_ns for name in before} == stats
    for folder in (p for p in workdir.rglob("*") if p.is_dir()):
        assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_an_output_that_is_a_directory_is_refused_in_one_line(workdir):
    """`-o DIR`: an output that cannot be written, 73, one line, nothing written."""
    (workdir / "out.elf").mkdir()
    before = listing(workdir)
    result = pvtool("patch", workdir / "hello.elf", "-o", workdir / "out.elf")
    assert result.status == 73
    assert "is a directory" in result.error_line()
    assert listing(workdir) == before
    assert list((workdir / "out.elf").iterdir()) == []


def test_a_failure_through_the_installed_command(workdir):
    """The real entry point: exit status, one line, no traceback, nothing written."""
    (workdir / "notes.txt").write_text("plain text\n")
    done = pvtool("patch", workdir / "notes.txt", "-o", workdir / "out.elf", installed=True)
    assert done.status == 65
    done.error_line()
    assert done.stdout == ""
    assert sorted(listing(workdir)) == ["hello.elf", "notes.txt"]


def test_debug_shows_the_traceback(workdir):
    (workdir / "notes.txt").write_text("plain text\n")
    done = pvtool("--debug", "patch", workdir / "notes.txt", installed=True)
    assert done.status == 65
    assert "Traceback" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("pvtool: error: ")


def test_an_unwritable_output_directory_is_refused_and_left_empty(hello):
    """Permissions only bind an unprivileged user: as root, run pvtool as nobody."""
    base = Path(tempfile.mkdtemp(prefix="pvtool-unwritable-"))
    try:
        base.chmod(0o755)
        image = base / "hello.elf"
        shutil.copy2(hello, image)
        image.chmod(0o644)
        locked = base / "locked"
        locked.mkdir()
        as_nobody = ()
        if os.geteuid() == 0:
            as_nobody = (require_tool("setpriv"), "--reuid=65534", "--regid=65534",
                         "--clear-groups")
        else:
            locked.chmod(0o555)
        done = pvtool("patch", image, "-o", locked / "out.elf", installed=True,
                      wrapper=as_nobody, env={"HOME": str(base)})
        assert done.status == 73, done.stderr
        done.error_line()
        assert str(locked) in done.stderr
        assert list(locked.iterdir()) == []
        assert image.read_bytes() == hello.read_bytes()
    finally:
        (base / "locked").chmod(0o755)
        shutil.rmtree(base)


# ---- end to end ----------------------------------------------------------------------------


def test_the_patched_hello_prints_what_the_original_prints_natively(workdir):
    image, out = workdir / "hello.elf", workdir / "hello.pv.elf"
    assert pvtool("patch", image, "-o", out).status == 0
    native = pvtool("run", "--native", "--quiet", image, installed=True, timeout=120)
    pv = pvtool("run", "--quiet", out, installed=True, timeout=120)
    assert native.status == 0, native.stderr
    assert pv.status == 0, pv.stderr
    assert native.stdout_bytes and pv.stdout_bytes == native.stdout_bytes
