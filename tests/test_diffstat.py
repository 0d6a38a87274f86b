"""pvtool diffstat: the counting rules of `diffstat -m`, the baseline share, the view
and the command, each on a small literal diff."""

import io
import json

import pytest
from rich.console import Console

from pvtool.diffstat import DiffstatResult, FileStat, measure, parse
from pvtool.errors import ImageError, InputMissingError
from pvtool.views import diffstat_view
from tests.cli import pvtool


def diff(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def counts(text: str | bytes) -> dict[str, tuple[int, int, int]]:
    return {f.name: (f.inserted, f.deleted, f.modified) for f in parse(text).files}


HEADER = ("--- a/f.c", "+++ b/f.c")


# ---- diffstat -m's counting

def test_a_replaced_line_is_one_modification():
    assert counts(diff(*HEADER, "@@ -1,3 +1,3 @@", " a", "-b", "+B", " c")) == {
        "b/f.c": (0, 0, 1)}


@pytest.mark.parametrize("body, expected", [
    (("-x", "+1", "+2", "+3"), (2, 0, 1)),   # min(3, 1) modified, 2 left inserted
    (("-1", "-2", "-3", "+x"), (0, 2, 1)),
    (("+1", "+2"), (2, 0, 0)),
    (("-1", "-2"), (0, 2, 0)),
])
def test_a_hunk_counts_min_of_its_lines_as_modified_and_the_rest_as_is(body, expected):
    minus = sum(line.startswith("-") for line in body)
    header = f"@@ -1,{minus} +1,{len(body) - minus} @@"
    assert counts(diff(*HEADER, header, *body)) == {"b/f.c": expected}


def test_insertions_and_deletions_in_different_hunks_are_not_modifications():
    text = diff(*HEADER, "@@ -1,2 +1,4 @@", " a", "+b", "+c", " d",
                "@@ -20,3 +22,1 @@", " t", "-u", "-v")
    assert counts(text) == {"b/f.c": (2, 2, 0)}


def test_several_files_are_listed_once_each_sorted_by_name():
    text = diff("--- a/z.c", "+++ b/z.c", "@@ -1 +1 @@", "-1", "+2",
                "--- a/m.c", "+++ b/m.c", "@@ -1,0 +1 @@", "+new",
                "--- a/z.c", "+++ b/z.c", "@@ -9 +9,0 @@", "-gone")
    assert [f.name for f in parse(text).files] == ["b/m.c", "b/z.c"]
    assert counts(text)["b/z.c"] == (0, 1, 1)


def test_no_newline_marker_is_not_a_line_and_does_not_end_the_hunk():
    text = diff(*HEADER, "@@ -1,2 +1,3 @@", " a", "-b", "\\ No newline at end of file",
                "+b", "+c", "\\ No newline at end of file")
    assert counts(text) == {"b/f.c": (1, 0, 1)}


def test_new_and_deleted_files_are_named_by_the_side_that_exists():
    text = diff("--- /dev/null", "+++ new.c", "@@ -0,0 +1,2 @@", "+1", "+2",
                "--- old.c", "+++ /dev/null", "@@ -1 +0,0 @@", "-1")
    assert counts(text) == {"new.c": (2, 0, 0), "old.c": (0, 1, 0)}


def test_git_paths_lose_their_a_and_b_prefixes_and_renames_take_the_new_name():
    text = diff("diff --git a/old.c b/new.c", "similarity index 90%", "rename from old.c",
                "rename to new.c", "index 1..2 100644", "--- a/old.c", "+++ b/new.c",
                "@@ -1 +1 @@", "-x", "+y",
                "diff --git a/gone.c b/gone.c", "deleted file mode 100644",
                "--- a/gone.c", "+++ /dev/null", "@@ -1 +0,0 @@", "-z")
    assert counts(text) == {"new.c": (0, 0, 1), "gone.c": (0, 1, 0)}


def test_pure_renames_copies_and_mode_changes_change_no_file():
    text = diff("diff --git a/a.c b/b.c", "similarity index 100%", "rename from a.c",
                "rename to b.c", "diff --git a/c.c b/d.c", "similarity index 100%",
                "copy from c.c", "copy to d.c",
                "diff --git a/run.sh b/run.sh", "old mode 100644", "new mode 100755")
    result = parse(text)
    assert result.files == ()
    assert result.summary_line() == " 0 files changed"


def test_git_quoted_names_and_names_with_blanks_are_read_whole():
    text = diff('diff --git "a/t\\tab.c" "b/t\\tab.c"', "new file mode 100644",
                "--- /dev/null", '+++ "b/t\\tab.c"', "@@ -0,0 +1 @@", "+x",
                'diff --git "a/\\303\\274.c" "b/\\303\\274.c"',
                'Binary files "a/\\303\\274.c" and "b/\\303\\274.c" differ',
                "diff --git a/sp ace.c b/sp ace.c", "--- a/sp ace.c\t", "+++ b/sp ace.c\t",
                "@@ -1 +1 @@", "-1", "+2")
    assert counts(text) == {"t\tab.c": (1, 0, 0), "\u00fc.c": (0, 0, 0), "sp ace.c": (0, 0, 1)}


@pytest.mark.parametrize("marker", [
    "Binary files old/img.bin and new/img.bin differ",
    "binary files old/img.bin and new/img.bin differ",
])
def test_a_binary_files_line_is_a_changed_file_without_lines(marker):
    result = parse(diff(marker))
    assert result.files == (FileStat("new/img.bin", kind="binary"),)
    assert result.summary_line() == " 1 file changed"


def test_a_git_binary_patch_is_a_binary_file_named_by_its_section():
    text = diff("diff --git a/logo.png b/logo.png", "index 1..2 100644", "GIT binary patch",
                "literal 2", "JcmZQz1pojC00sa6", "", "literal 3", "KcmZQzWC8#H2LJ>B", "")
    assert parse(text).files == (FileStat("logo.png", kind="binary"),)


def test_every_binary_file_is_one_changed_file_named_by_its_path():
    # diffstat 1.65 lists neither of the new binaries here (it sees "GIT binary patch"
    # only right after "diff --git" and "index"), and names both deleted ones
    # "/dev/null", one file: " 1 file changed". pvtool counts what git --stat counts.
    text = diff("diff --git a/new.bin b/new.bin", "new file mode 100644",
                "index 0000000..1234567", "GIT binary patch", "literal 2",
                "JcmZQz1pojC00sa6", "",
                "diff --git a/mode.bin b/mode.bin", "old mode 100644", "new mode 100755",
                "index 1234567..89abcde", "GIT binary patch", "literal 2",
                "JcmZQz1pojC00sa6", "",
                "diff --git a/gone1.bin b/gone1.bin", "deleted file mode 100644",
                "index 1234567..0000000", "Binary files a/gone1.bin and /dev/null differ",
                "diff --git a/gone2.bin b/gone2.bin", "deleted file mode 100644",
                "index 89abcde..0000000", "Binary files a/gone2.bin and /dev/null differ")
    result = parse(text)
    assert [(f.name, f.kind) for f in result.files] == [
        ("gone1.bin", "binary"), ("gone2.bin", "binary"),
        ("mode.bin", "binary"), ("new.bin", "binary")]
    assert result.summary_line() == " 4 files changed"


def test_only_in_lines_are_changed_files_without_lines():
    result = parse(diff("Only in old/sub: gone.h", "Only in new: added.c"))
    assert result.files == (FileStat("new/added.c", kind="only"),
                            FileStat("old/sub/gone.h", kind="only"))
    assert result.summary_line() == " 2 files changed"


def test_crlf_line_ends_count_as_lf_ones():
    lf = diff(*HEADER, "@@ -1,2 +1,3 @@", " a", "-b", "+B", "+C", "", "\\ No newline")
    assert counts(lf.replace("\n", "\r\n").encode()) == counts(lf) == {"b/f.c": (1, 0, 1)}


def test_lines_before_the_first_header_are_ignored():
    text = diff("Subject: [PATCH] use hypercalls", "", "+ a feature", "- a bug", "---",
                " f.c | 2 +-", *HEADER, "@@ -1 +1 @@", "-a", "+b")
    assert counts(text) == {"b/f.c": (0, 0, 1)}


def test_a_hunk_header_quoted_in_prose_does_not_hide_the_next_file():
    # diffstat 1.65 says (1, 0, 1) here: it opens a hunk at the quoted "@@" and then
    # counts "+++ b/f.c" as an inserted line. pvtool reads the header as a header.
    text = diff("Subject: fix", "@@ -1 +1 @@", *HEADER, "@@ -1 +1 @@", "-a", "+b")
    assert counts(text) == {"b/f.c": (0, 0, 1)}


def test_header_lookalikes_inside_a_hunk_are_lines():
    text = diff(*HEADER, "@@ -1,2 +1,2 @@", "--- a/removed-line", "+++ b/added-line",
                "-x", "+y")
    assert counts(text) == {"b/f.c": (0, 0, 2)}


def test_a_line_after_a_hunk_that_is_no_hunk_or_header_closes_the_file():
    # A mail signature after the last hunk is not counted; neither, as in diffstat,
    # is a hunk that follows such a line.
    text = diff(*HEADER, "@@ -1 +1,2 @@", " a", "+b", "-- ", "2.39.5",
                "@@ -9 +10 @@", "-late", "+hunk", "+ trailing")
    assert counts(text) == {"b/f.c": (1, 0, 0)}


def test_a_hunk_header_without_a_count_means_one_line():
    text = diff(*HEADER, "@@ -5 +5 @@", "-x", "+y", "--- a/g.c", "+++ b/g.c",
                "@@ -1 +1,2 @@", " k", "+l")
    assert counts(text) == {"b/f.c": (0, 0, 1), "b/g.c": (1, 0, 0)}


def test_a_hunk_cut_short_by_a_new_file_keeps_its_lines_and_the_next_file_counts():
    text = diff(*HEADER, "@@ -1,9 +1,9 @@", "-a", "+b",
                "diff --git a/g.c b/g.c", "--- a/g.c", "+++ b/g.c", "@@ -1 +0,0 @@", "-z")
    assert counts(text) == {"b/f.c": (0, 0, 1), "g.c": (0, 1, 0)}


def test_hunks_without_any_header_are_named_after_the_diff_itself():
    result = parse(diff("@@ -1,2 +1,2 @@", "-a", "+b", " c"), source="fix.rej")
    assert result.files == (FileStat("fix.rej", modified=1),)


# ---- the baseline and Xen's share

LISTING = ("# pvtool-baseline-lines: 400", "--- x.listing", "+++ x.pv.listing",
           "@@ -1,3 +1,4 @@", " push %ebp", "-cli", "+call pv_cli", "+nop", " ret")


def test_baseline_gives_the_share_of_lines_modified_or_added():
    result = parse(diff(*LISTING))
    assert result.baseline_lines == 400
    assert result.totals.added_or_modified == 2  # one modified + one inserted
    assert result.share_percent == pytest.approx(0.5)


def test_without_a_baseline_there_is_no_share():
    result = parse(diff(*LISTING[1:]))
    assert result.baseline_lines is None
    assert result.share_percent is None


def test_a_baseline_line_after_the_first_header_is_not_a_baseline():
    assert parse(diff(*LISTING[1:], "# pvtool-baseline-lines: 10")).baseline_lines is None


def test_a_zero_baseline_has_no_share():
    result = parse(diff("# pvtool-baseline-lines: 0", *LISTING[1:]))
    assert (result.baseline_lines, result.share_percent) == (0, None)


@pytest.mark.parametrize("value", ["", "many", "-3", "1.5"])
def test_a_malformed_baseline_is_corrupt_input(value):
    with pytest.raises(ImageError, match="bad baseline line"):
        parse(diff(f"# pvtool-baseline-lines: {value}", *LISTING[1:]))


def test_a_baseline_with_no_changes_is_zero_percent():
    result = parse(diff("# pvtool-baseline-lines: 50"))
    assert (result.files, result.share_percent) == ((), 0.0)


# ---- the summary line and JSON

@pytest.mark.parametrize("files, expected", [
    ((), " 0 files changed"),
    ((FileStat("a", 1, 0, 0),), " 1 file changed, 1 insertion(+)"),
    ((FileStat("a", 0, 1, 0),), " 1 file changed, 1 deletion(-)"),
    ((FileStat("a", 0, 0, 1),), " 1 file changed, 1 modification(!)"),
    ((FileStat("a", 0, 0, 0, "binary"),), " 1 file changed"),
    ((FileStat("a", 2, 3, 4), FileStat("b", 8, 0, 0)),
     " 2 files changed, 10 insertions(+), 3 deletions(-), 4 modifications(!)"),
    ((FileStat("a", 1, 1, 1), FileStat("b", kind="only"), FileStat("c", kind="binary")),
     " 3 files changed, 1 insertion(+), 1 deletion(-), 1 modification(!)"),
])
def test_summary_line_has_diffstats_words_plurals_and_omissions(files, expected):
    assert DiffstatResult(files).summary_line() == expected


def test_to_dict_is_json_with_files_totals_and_share():
    data = json.loads(json.dumps(parse(diff(*LISTING)).to_dict()))
    assert data["files"] == [{"name": "x.pv.listing", "inserted": 1, "deleted": 0,
                              "modified": 1, "kind": "text"}]
    assert data["totals"] == {"files": 1, "inserted": 1, "deleted": 0, "modified": 1,
                              "added_or_modified": 2}
    assert (data["baseline_lines"], data["share_percent"]) == (400, 0.5)
    assert data["summary"] == " 1 file changed, 1 insertion(+), 1 modification(!)"


# ---- what is not a diff

@pytest.mark.parametrize("text", [
    b"hello\nworld\n", b"\x7fELF\x01\x01\x01\x00\x00\xff\xfe\n\x00",
    b"*** a\n--- b\n***************\n", b"1c1\n< a\n---\n> b\n",
])
def test_text_without_file_headers_or_hunks_is_not_a_diff(text):
    with pytest.raises(ImageError, match=r"^x\.diff: not a unified diff"):
        parse(text, source="x.diff")


@pytest.mark.parametrize("text", [b"", b"\n\n", b"\r\n"])
def test_an_empty_diff_changes_no_file(text):
    assert parse(text).summary_line() == " 0 files changed"


def test_measure_reads_a_file(tmp_path):
    path = tmp_path / "p.diff"
    path.write_text(diff(*LISTING))
    assert measure(path) == parse(diff(*LISTING))


def test_a_missing_or_unreadable_diff_is_missing_input(tmp_path):
    with pytest.raises(InputMissingError, match="no such file") as missing:
        measure(tmp_path / "nope.diff")
    assert missing.value.exit_status == 66
    with pytest.raises(InputMissingError, match="is a directory"):
        measure(tmp_path)


# ---- the view

@pytest.mark.parametrize("counts_, scale, width, bar", [
    ((3, 2, 1), 6, 30, "+++--!"),          # fits: one mark a line
    ((60, 0, 0), 60, 30, "+" * 30),        # scaled down to the width
    ((10, 10, 10), 60, 30, "+++++-----!!!!!"),
    ((1, 1, 1), 60, 56, "-"),              # the negative carry swallows '+' and '!'
    ((0, 0, 0), 0, 30, ""),
])
def test_histogram_draws_as_diffstat_does(counts_, scale, width, bar):
    assert diffstat_view.histogram(counts_, scale, width) == bar


def render(result: DiffstatResult) -> str:
    out = io.StringIO()
    diffstat_view.render(result, Console(file=out, width=100, color_system=None))
    return out.getvalue()


def test_view_shows_files_bars_totals_share_and_summary_last():
    text = diff(*LISTING, "Binary files a/logo.png and b/logo.png differ")
    shown = render(parse(text))
    assert "x.pv.listing" in shown and "+!" in shown
    assert "logo.png" in shown and "binary" in shown
    assert "total" in shown
    assert "lines modified or added: 2 of 400 baseline lines (0.50%)" in shown
    assert shown.splitlines()[-1] == " 2 files changed, 1 insertion(+), 1 modification(!)"


def test_view_shows_names_literally_not_as_markup():
    shown = render(parse(diff("--- [bold]x", "+++ [bold]x", "@@ -1 +1 @@", "-a", "+b")))
    assert "[bold]x" in shown


LONG_NAMES = ("arch/x86/kernel/cpu/microcode/intel.c",
              "drivers/xen/xenbus/a/folder/deep/enough/to/be/long/xenbus_probe_frontend.c")


def rendered_at(width: int) -> list[str]:
    text = diff(*(line for name in LONG_NAMES for line in (
        f"--- a/{name}", f"+++ b/{name}", "@@ -1 +1,2 @@", "-a", "+b", "+c")))
    out = io.StringIO()
    diffstat_view.render(parse(text), Console(file=out, width=width, color_system=None))
    return out.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 120, 200])
@pytest.mark.parametrize("name", LONG_NAMES)
def test_view_gives_each_name_whole_or_broken_only_after_a_slash(width, name):
    lines = rendered_at(width)
    first = next(i for i, line in enumerate(lines) if line.startswith(f"b/{name[:4]}"))
    assert lines[first].split()[1:4] == ["1", "0", "1"]  # inserted, deleted, modified
    parts = [line.split()[0] for line in lines[first:]]
    end = next(i for i, part in enumerate(parts) if not part.endswith("/"))
    assert "".join(parts[:end + 1]) == f"b/{name}"
    assert (end > 0) == (len(name) + 50 > width)  # 50: the counts and a bar beside it
    assert max(map(len, lines)) <= width


def test_view_without_baseline_shows_no_share():
    assert "baseline" not in render(parse(diff(*LISTING[1:])))


# ---- the command

@pytest.fixture
def listing(tmp_path):
    path = tmp_path / "hello.pv.diff"
    path.write_text(diff(*LISTING))
    return path


def test_command_prints_the_table_and_the_summary_line(listing):
    done = pvtool("diffstat", listing)
    assert done.status == 0, done.output
    assert " 1 file changed, 1 insertion(+), 1 modification(!)" in done.stdout
    assert "(0.50%)" in done.stdout


def test_command_json_holds_the_results_dict_and_the_ports_figures(listing):
    done = pvtool("diffstat", "--json", "-", listing)
    assert done.status == 0, done.output
    data = json.loads(done.stdout)
    assert data.items() >= measure(listing).to_dict().items()  # diffstat's figures kept
    assert {"categories", "parts", "xen", "lines_modified_or_added"} <= data.keys()


def test_command_on_a_missing_file_says_one_line_and_exits_66(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short path, so the line fits the terminal width
    done = pvtool("diffstat", "nope.diff")
    assert done.status == 66
    assert done.stderr == "pvtool: error: nope.diff: no such file\n"


def test_command_error_for_a_long_path_is_still_one_line(tmp_path):
    long_path = tmp_path.joinpath(*["x" * 100] * 3, "nope.diff")
    done = pvtool("diffstat", long_path)
    assert done.status == 66
    assert len(done.stderr.splitlines()) == 1


def test_command_on_a_non_diff_fails_without_a_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a diff at all\n")
    done = pvtool("diffstat", "notes.txt")
    assert done.status == 65
    assert "Traceback" not in done.output
    assert done.stderr == ("pvtool: error: notes.txt: not a unified diff "
                           "(no file headers or hunks found)\n")
