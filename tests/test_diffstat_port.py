"""pvtool diffstat as a measure of a port: every input (listing diff, source diff with its
baseline tree, patch set, two images), Table 2's categories, the baseline's size and the
check that a diff applies to it, and the errors for bad input."""

import difflib
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from pvtool.diffstat import baseline, xen_table2
from pvtool.diffstat.port import (
    AUTOMATIC,
    HAND_WRITTEN,
    UNCATEGORIZED,
    CategoryRule,
    measure_port,
)
from pvtool.errors import ImageError, InputMissingError, UsageError
from pvtool.patch.patchset import PATCHES_DIR
from pvtool.views import diffstat_view
from tests.cli import pvtool
from tests.profiles import examples

XEN32 = PATCHES_DIR / "xen32"


def lines(*items: str) -> str:
    return "".join(f"{item}\n" for item in items)


# ---- a source tree and diffs against it

@pytest.fixture
def tree(tmp_path):
    """old/ and new/: a driver split like Table 2's categories, and their diffs."""
    old, new = tmp_path / "old", tmp_path / "new"
    files = {
        "kernel/sched.c": (lines("int a;", "", "/* the scheduler */", "int b;", "int c;"),
                           lines("int a;", "", "/* the scheduler */", "int B;", "int c;")),
        "drivers/net/ne2k.c": (lines("// probe", "int probe(void);", "x"),
                               lines("// probe", "int probe(void);", "x", "int xennet;",
                                     "int rings;")),
        "arch/xen/entry.S": (None, lines("#include <x.h>", "# a comment", "mov %eax, %ebx",
                                         "; asm comment", "ret")),
        "README": (lines("doc", "doc"), lines("doc", "doc")),
    }
    for name, sides in files.items():
        for root, text in zip((old, new), sides, strict=True):
            if text is not None:
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_text(text)
    done = subprocess.run(["diff", "-ruN", "old", "new"], cwd=tmp_path, capture_output=True,
                          check=False)
    assert done.returncode == 1, done.stderr
    (tmp_path / "port.diff").write_bytes(done.stdout)
    return tmp_path


def test_a_source_diff_with_its_baseline_gives_xens_figure_and_share(tree):
    port = measure_port((tree / "port.diff",), tree / "old")
    # +1 modified (sched.c), +2 (ne2k.c), +5 new entry.S: every '+' line.
    assert port.added_or_modified == 8
    assert port.diffstat.baseline_lines == 5 + 3 + 2  # every line of old/
    assert port.share_percent == pytest.approx(80.0)
    assert port.baseline.strip == 1  # "old/kernel/sched.c" found as kernel/sched.c


def test_sloc_counts_only_code_lines_of_c_assembly_and_python(tree):
    size = baseline.size(tree / "new", sloc=True)
    # sched.c: 3 code lines (blank and /* */ out); ne2k.c: 4 (// out); entry.S: 3
    # (#include is code, "# a comment" and "; ..." are not); README is not source.
    assert (size.lines, size.files, size.measure) == (3 + 4 + 3, 3, "sloc")
    assert baseline.size(tree / "new").lines == 5 + 5 + 5 + 2


@pytest.mark.parametrize("suffix, text, expected", [
    (".c", "a;\n/* one\n   two */ b;\n// c\n\n  /* x */ /* y */\nd; // e\n", 3),
    (".h", "/* open\n*/\n#define X 1\n", 1),
    (".py", "import os\n# comment\n\n'''doc'''\nx = 1  # trailing\n", 3),
    (".asm", "mov eax, 1 ; why\n; only a comment\n## pv_entry\nret\n", 2),
    (".S", "#define N 4\n#if N\n# 12 \"file.S\"\n/* c */ ret\n", 3),
])
def test_code_lines_drop_blank_and_comment_lines(suffix, text, expected):
    assert baseline.code_lines(text, suffix) == expected


def test_categories_by_path_pattern_sort_files_into_table_2_rows(tree):
    port = measure_port((tree / "port.diff",), tree / "old",
                        categories=("net=drivers/net/*", "hypervisor=arch/xen/*",
                                    "architecture-independent=kernel/*"))
    rows = {r.name: r.total for r in port.categories()}
    assert rows == {xen_table2.ARCH_INDEPENDENT: 1, xen_table2.NET_DRIVER: 2,
                    xen_table2.BLOCK_DRIVER: 0, xen_table2.HYPERVISOR_SPECIFIC: 5}
    assert {p.name: p.category for p in port.parts}["new/drivers/net/ne2k.c"] == \
        xen_table2.NET_DRIVER


def test_unmatched_files_are_uncategorized_and_own_categories_are_kept(tree):
    port = measure_port((tree / "port.diff",), categories=("my layer=*.S", "net=*.c"))
    rows = [(r.name, r.total) for r in port.categories()]
    assert rows[4:] == [("my layer", 5)]  # after Table 2's four, in that order
    port = measure_port((tree / "port.diff",), categories=("net=drivers/*",))
    assert [(r.name, r.total) for r in port.categories()][-1] == (UNCATEGORIZED, 6)


def test_first_matching_category_wins_and_automatic_files_are_kept_apart(tree):
    port = measure_port((tree / "port.diff",), categories=("block=*.c", "net=*.c"),
                        automatic=("*.S",))
    block = next(r for r in port.categories() if r.name == xen_table2.BLOCK_DRIVER)
    assert (block.automatic, block.hand_written) == (0, 3)
    origins = {p.name: p.origin for p in port.parts}
    assert origins["new/arch/xen/entry.S"] == AUTOMATIC
    assert origins["new/kernel/sched.c"] == HAND_WRITTEN


@pytest.mark.parametrize("text", ["net", "=x", "net=", " = "])
def test_a_category_without_name_and_glob_is_a_usage_error(text):
    with pytest.raises(UsageError, match="want NAME=GLOB"):
        CategoryRule.parse(text)


def test_category_aliases_name_table_2_rows():
    assert CategoryRule.parse("Block=x").name == xen_table2.BLOCK_DRIVER
    assert CategoryRule.parse("Xen-specific (non-driver)=x").name == \
        xen_table2.HYPERVISOR_SPECIFIC
    assert CategoryRule.parse("mine=x").name == "mine"


def test_a_glob_matches_with_leading_directories_dropped():
    rule = CategoryRule("net", "drivers/net/*")
    assert rule.matches("b/drivers/net/e1000.c") and rule.matches("drivers/net/x/y.c")
    assert not rule.matches("drivers/block/net/x.c")


def test_a_git_diff_applies_with_its_prefixes_dropped(tree):
    root = tree / "repo"
    shutil.copytree(tree / "old", root)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(root)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "old"], check=True)
    shutil.rmtree(root / "kernel")
    # Written afresh, not copied with their times: a file of the same size, time and
    # (reused) inode as the committed one would look unchanged to git's stat check.
    shutil.copytree(tree / "new" / "kernel", root / "kernel", copy_function=shutil.copyfile)
    diff = subprocess.run([*git, "diff"], capture_output=True, check=True).stdout
    subprocess.run([*git, "checkout", "-q", "--", "."], check=True)
    (tree / "git.diff").write_bytes(diff)
    port = measure_port((tree / "git.diff",), root)
    assert port.baseline.strip == 0 and port.added_or_modified == 1


# ---- a diff that does not apply

def test_a_hunk_whose_old_lines_differ_from_the_baseline_is_refused(tree):
    (tree / "old" / "kernel" / "sched.c").write_text(lines("int a;", "", "/* x */", "int b;",
                                                           "int c;"))
    with pytest.raises(ImageError, match=r"does not apply to .*kernel/sched.c line 3: "
                                         r"the diff expects '/\* the scheduler \*/', "
                                         r"the file has '/\* x \*/'"):
        measure_port((tree / "port.diff",), tree / "old")


def test_a_diff_modifying_a_missing_file_is_refused(tree):
    (tree / "old" / "drivers" / "net" / "ne2k.c").unlink()
    with pytest.raises(ImageError, match=r"old/drivers/net/ne2k.c is not in it "
                                         r"\(as .*old/drivers/net/ne2k.c\)$"):
        measure_port((tree / "port.diff",), tree / "old")


def test_a_diff_creating_a_file_the_baseline_has_is_refused(tree):
    (tree / "old" / "arch" / "xen").mkdir(parents=True)
    (tree / "old" / "arch" / "xen" / "entry.S").write_text("ret\n")
    with pytest.raises(ImageError, match=r"creates new/arch/xen/entry.S, which already"):
        measure_port((tree / "port.diff",), tree / "old")


def test_a_diff_past_the_end_of_the_file_is_refused(tree):
    (tree / "old" / "kernel" / "sched.c").write_text(lines("int a;", ""))
    with pytest.raises(ImageError, match=r"line 3: the diff expects .*, the file ends$"):
        measure_port((tree / "port.diff",), tree / "old")


def test_a_missing_or_wrong_baseline_is_missing_input(tree):
    with pytest.raises(InputMissingError, match="no such baseline directory") as missing:
        measure_port((tree / "port.diff",), tree / "nowhere")
    assert missing.value.exit_status == 66
    with pytest.raises(InputMissingError, match="is not a directory"):
        measure_port((tree / "port.diff",), tree / "port.diff")


@st.composite
def edits(draw):
    old = draw(st.lists(st.sampled_from(["a", "b", "c", "", "x = 1;", "}"]), max_size=30))
    new = list(old)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(new)))
        if draw(st.booleans()) and at < len(new):
            del new[at]
        else:
            new.insert(at, draw(st.sampled_from(["new", "b", "y = 2;", ""])))
    return old, new, draw(st.integers(0, 3))


@settings(max_examples=examples(60))
@given(edits())
def test_every_diff_of_the_baseline_applies_and_its_share_is_plus_lines(tmp_path_factory,
                                                                       edit):
    old, new, context = edit
    root = tmp_path_factory.mktemp("base")
    (root / "f.c").write_text(lines(*old))
    text = "".join(f"{line}\n" for line in difflib.unified_diff(
        old, new, "a/f.c", "b/f.c", n=context, lineterm=""))
    (root.parent / f"{root.name}.diff").write_text(text)
    port = measure_port((root.parent / f"{root.name}.diff",), root)
    plus = sum(1 for line in text.splitlines()[2:] if line.startswith("+"))
    assert port.added_or_modified == plus
    assert port.diffstat.baseline_lines == len(old)
    if any(line.startswith("-") for line in text.splitlines()[2:]):  # break the baseline
        (root / "f.c").write_text(lines(*[f"{line}!" for line in old]))
        with pytest.raises(ImageError, match="does not apply"):
            measure_port((root.parent / f"{root.name}.diff",), root)


# ---- listing diffs: sites, stubs and glue

LISTING = lines(
    "# pvtool-baseline-lines: 100",
    "--- k.elf", "+++ k.pv.elf",
    "@@ -1,3 +1,4 @@",
    " 00100000 <main>: push ebp",
    "-00100001 <main+0x1>: cli",
    "+00100001 <main+0x1>: jmp 0xfc803000",
    "+00100006 <main+0x6>: int3",
    " 00100007 <main+0x7>: ret",
    "@@ -100,0 +101,5 @@",
    "+fc802000 <pv_entry>: mov ebx, 1",
    "+fc802005 <pv_blk_read>: ret",
    "+fc803000 <pv_stub_0>: mov byte ptr [0xf5800001], 1",
    "+fc803007 <pv_stub_0+0x7>: jmp 0x100007",
    "+fc80300c <pv_stub_1>: ret",
)


def test_listing_lines_go_to_sites_stubs_and_glue_by_their_function(tmp_path):
    (tmp_path / "k.pv.diff").write_text(LISTING)
    port = measure_port((tmp_path / "k.pv.diff",))
    parts = {p.name: (p.origin, p.category, p.added, p.removed) for p in port.parts}
    hyp = xen_table2.HYPERVISOR_SPECIFIC
    assert parts == {"sites": (AUTOMATIC, hyp, 2, 1), "stubs": (AUTOMATIC, hyp, 3, 0),
                     "glue": (HAND_WRITTEN, hyp, 2, 0)}
    assert port.added_or_modified == 7 and port.share_percent == pytest.approx(7.0)
    row = next(r for r in port.categories() if r.name == hyp)
    assert (row.automatic, row.hand_written, row.linux, row.xp) == (5, 2, 1363, 3321)


def test_listing_categories_match_function_names(tmp_path):
    (tmp_path / "k.pv.diff").write_text(LISTING)
    port = measure_port((tmp_path / "k.pv.diff",), categories=("block=pv_blk*",))
    rows = {r.name: (r.automatic, r.hand_written) for r in port.categories()}
    assert rows[xen_table2.BLOCK_DRIVER] == (0, 1)
    assert rows[xen_table2.HYPERVISOR_SPECIFIC] == (5, 1)


def test_a_listing_diff_refuses_a_baseline_directory(tmp_path):
    (tmp_path / "k.pv.diff").write_text(LISTING)
    with pytest.raises(UsageError, match="carries its baseline"):
        measure_port((tmp_path / "k.pv.diff",), tmp_path)


# ---- patch sets

def test_a_patch_set_counts_every_line_of_its_files_as_hand_written():
    port = measure_port((XEN32,))
    counts = {p.name: p.added for p in port.parts}
    assert counts == {f"xen32/{f.name}": len(f.read_text().splitlines())
                      for f in XEN32.iterdir() if f.is_file()}
    assert {p.origin for p in port.parts} == {HAND_WRITTEN}
    assert port.diffstat.summary_line() == (
        f" 2 files changed, {sum(counts.values())} insertions(+)")
    assert port.share_percent is None


def test_a_patch_set_counts_as_diff_ruN_from_an_empty_folder_does(tmp_path):
    from tests.test_diffstat_oracle import diffstat_counts, find_diffstat
    program = find_diffstat()
    (tmp_path / "empty").mkdir()
    shutil.copytree(XEN32, tmp_path / "xen32")
    done = subprocess.run(["diff", "-ruN", "empty", "xen32"], cwd=tmp_path,
                          capture_output=True, check=False)
    (tmp_path / "set.diff").write_bytes(done.stdout)
    theirs = diffstat_counts(program, tmp_path / "set.diff")
    ours = {Path(f.name).name: (f.inserted, f.deleted, f.modified)
            for f in measure_port((XEN32,)).diffstat.files}
    assert ours == theirs


def test_a_patch_set_with_a_baseline_gets_its_share(tmp_path):
    (tmp_path / "k.c").write_text("int x;\n" * 1000)
    port = measure_port((XEN32,), tmp_path)
    assert port.share_percent == pytest.approx(port.added_or_modified / 10)


# ---- two images

@pytest.fixture(scope="module")
def patched_hello(tmp_path_factory):
    from pvtool.patch.pipeline import patch_image
    from tests.oracles import guest_path
    elf = guest_path("hello")
    out = tmp_path_factory.mktemp("images") / "hello.pv.elf"
    patch_image(elf, out)
    return elf, out


def test_two_images_give_the_listing_diff_pvtool_patch_wrote(patched_hello):
    from pvtool.diffstat.images import listing_diff
    elf, out = patched_hello
    assert listing_diff(elf, out) == out.with_suffix(".diff").read_text()


def test_two_images_measure_as_their_listing_diff(patched_hello):
    elf, out = patched_hello
    from_images = measure_port((elf, out))
    from_diff = measure_port((out.with_suffix(".diff"),))
    assert from_images.kind == "images"
    assert from_images.parts == from_diff.parts
    assert from_images.diffstat == from_diff.diffstat
    assert {p.name for p in from_images.parts} >= {"sites", "glue"}


def test_an_image_compared_with_itself_changes_nothing(patched_hello):
    elf, _ = patched_hello
    port = measure_port((elf, elf))
    assert port.added_or_modified == 0 and port.diffstat.summary_line() == " 0 files changed"


def test_one_image_alone_is_a_usage_error(patched_hello):
    elf, _ = patched_hello
    done = pvtool("diffstat", elf)
    assert done.status == 64
    assert len(done.stderr.splitlines()) == 1 and "ORIG.elf PATCHED.elf" in done.stderr


def test_images_take_no_baseline_directory(patched_hello, tmp_path):
    elf, out = patched_hello
    assert pvtool("diffstat", elf, out, "--baseline", tmp_path).status == 64


# ---- the view and the command

def render(port) -> str:
    out = io.StringIO()
    diffstat_view.render_port(port, Console(file=out, width=80, color_system=None))
    return out.getvalue()


def test_the_table_puts_the_port_beside_xens_linux_and_xp(tmp_path):
    (tmp_path / "k.pv.diff").write_text(LISTING)
    shown = render(measure_port((tmp_path / "k.pv.diff",)))
    for category in xen_table2.CATEGORIES:
        assert category.name in shown
    total = next(line for line in shown.splitlines() if line.startswith("total"))
    assert total.split() == ["total", "5", "2", "7", str(xen_table2.LINUX_TOTAL),
                             str(xen_table2.XP_TOTAL)]
    share = next(line for line in shown.splitlines() if line.startswith("portion"))
    assert share.split()[-3:] == ["7.00%", "1.36%", "0.04%"]
    assert "glue: the patch set's glue.asm, written by hand" in shown
    assert shown.splitlines()[-1] == " 1 file changed, 6 insertions(+), 1 modification(!)"


def test_the_command_json_has_categories_parts_baseline_and_xens_figures(tree):
    done = pvtool("diffstat", tree / "port.diff", "--baseline", tree / "old", "--sloc",
                  "--json", "-", "--category", "net=drivers/net/*")
    assert done.status == 0, done.output
    data = json.loads(done.stdout)
    assert data["input"]["kind"] == "unified diff"
    assert data["baseline"]["measure"] == "sloc" and data["baseline"]["strip"] == 1
    assert data["lines_modified_or_added"] == 8
    assert data["xen"] == {"linux": {"lines": 2995, "share_percent": 1.36},
                           "xp": {"lines": 4620, "share_percent": 0.04}}
    net = next(c for c in data["categories"] if c["name"] == xen_table2.NET_DRIVER)
    assert (net["total"], net["xen_linux"], net["xen_xp"]) == (2, 484, None)
    assert sum(p["added"] for p in data["parts"]) == 8
    assert data["summary"].startswith(" 3 files changed")


def test_the_command_on_a_patch_set_prints_table_2_and_the_summary_last():
    done = pvtool("diffstat", XEN32)
    assert done.status == 0, done.output
    assert "hypervisor-specific non-driver" in done.stdout
    assert done.stdout.splitlines()[-1].startswith(" 2 files changed")


@pytest.mark.parametrize("case, status, message", [
    ("not_a_diff", 65, "notes.txt: not a unified diff (no file headers or hunks found)"),
    ("not_applying", 65, "port.diff: does not apply to old: kernel/sched.c is not in it"),
    ("missing_baseline", 66, "nowhere: no such baseline directory"),
    ("bad_category", 64, "--category 'net': want NAME=GLOB"),
    ("image_in_a_series", 64, "k.elf: is an ELF image, not a diff"),
    ("folder", 66, "old: is a directory, not a diff (nor a patch set: no rules.toml; "
                   "nor a series: no *.diff)"),
])
def test_bad_input_gets_one_line_and_its_status(tree, monkeypatch, case, status, message):
    monkeypatch.chdir(tree)
    (tree / "notes.txt").write_text("not a diff\n")
    (tree / "k.elf").write_bytes(b"\x7fELF" + bytes(48))
    args = {
        "not_a_diff": ["notes.txt"],
        "not_applying": ["port.diff", "--baseline", "old", "--sloc"],
        "missing_baseline": ["port.diff", "--baseline", "nowhere"],
        "bad_category": ["port.diff", "--category", "net"],
        "image_in_a_series": ["port.diff", "k.elf", "port.diff"],
        "folder": ["old"],
    }[case]
    if case == "not_applying":
        (tree / "old" / "kernel" / "sched.c").rename(tree / "old" / "sched.c")
        message = ("port.diff: does not apply to old: old/kernel/sched.c is not in it "
                   "(as old/kernel/sched.c)")
    done = pvtool("diffstat", *args)
    assert done.status == status, done.output
    assert done.stderr.startswith(f"pvtool: error: {message}")
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.output


def test_a_byte_a_detour_left_as_it_was_does_not_cut_its_jump(tmp_path):
    """The detour's jmp rel32 to the glue window (0xFC8...) from 1 MiB has 0xFC as its
    last byte, which is also the cld it displaced: that cld's bytes are unchanged, yet
    it is part of the jump. The two images still give the diff pvtool patch wrote."""
    from pvtool.diffstat.images import listing_diff
    from pvtool.patch.pipeline import patch_image
    from tests.patch.tools import build_kernel, read_virtual

    elf, symbols = build_kernel(tmp_path, """
.globl _start
.type _start, @function
_start:
    sti
    inc eax
    inc ebx
    inc ecx
    cld
    ret
""")
    out = tmp_path / "k.pv.elf"
    patch_image(elf, out)
    jump = read_virtual(out, symbols["_start"], 5)  # objdump's view of the output
    assert jump[0] == 0xE9 and jump[4] == read_virtual(elf, symbols["_start"] + 4, 1)[0]
    assert listing_diff(elf, out) == out.with_suffix(".diff").read_text()
