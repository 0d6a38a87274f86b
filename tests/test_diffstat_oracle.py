"""pvtool diffstat against the real `diffstat -m` (Debian's diffstat 1.65).

Three sources of diffs: the corpus in tests/diffs (git, diff -ru, CRLF, binary, rename,
signature and truncation cases), trees diffed in a temporary directory by `diff -ru` and
`git diff`, and random files with random edits diffed by `diff -u`. On each, pvtool's
per-file counts, its summary line and its histogram must be diffstat's.
"""

import csv
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvtool.diffstat import DiffstatResult, measure, parse
from pvtool.views.diffstat_view import histogram

CORPUS = sorted((Path(__file__).parent / "diffs").glob("*.diff"))
HISTOGRAM_WIDTH = 72


def find_diffstat() -> str:
    """The oracle's path; skips locally without it, fails in CI (which installs it)."""
    path = shutil.which("diffstat") or "/usr/bin/diffstat"
    if not os.access(path, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail("diffstat is not installed, and CI must run the oracle tests")
        pytest.skip("diffstat is not installed (apt-get install diffstat)")
    return path


@pytest.fixture(scope="module")
def diffstat() -> str:
    return find_diffstat()


def run_diffstat(program: str, diff: Path, *options: str) -> list[str]:
    done = subprocess.run([program, "-m", *options, str(diff)], capture_output=True,
                          text=True, check=True)
    return done.stdout.splitlines()


def diffstat_counts(program: str, diff: Path) -> dict[str, tuple[int, int, int]]:
    """diffstat -m -t's rows by base name (diffstat strips common prefixes; pvtool
    keeps paths, so only base names compare; each test diff keeps them unique)."""
    rows = list(csv.reader(run_diffstat(program, diff, "-t")[1:]))
    counts = {os.path.basename(name): (int(i), int(d), int(m)) for i, d, m, name in rows}
    assert len(counts) == len(rows), "test diffs keep base names unique"
    return counts


def pvtool_counts(result: DiffstatResult) -> dict[str, tuple[int, int, int]]:
    counts = {os.path.basename(f.name): (f.inserted, f.deleted, f.modified)
              for f in result.files}
    assert len(counts) == len(result.files), "test diffs keep base names unique"
    return counts


def assert_same_as_diffstat(program: str, diff: Path) -> DiffstatResult:
    result = measure(diff)
    assert pvtool_counts(result) == diffstat_counts(program, diff)
    assert result.summary_line() == run_diffstat(program, diff)[-1]
    return result


@pytest.mark.parametrize("ci, outcome", [("", pytest.skip.Exception),
                                         ("true", pytest.fail.Exception)])
def test_without_diffstat_the_oracle_skips_locally_and_fails_in_ci(monkeypatch, ci, outcome):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome):
        find_diffstat()


# ---- (a) the corpus, and trees diffed here

@pytest.mark.parametrize("diff", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_counts_and_summary_equal_diffstat(diffstat, diff):
    assert_same_as_diffstat(diffstat, diff)


@pytest.mark.parametrize("diff", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_histograms_equal_diffstat(diffstat, diff):
    result = measure(diff)
    stats = {os.path.basename(f.name): f for f in result.files}
    scale = max((f.changed for f in result.files), default=0)
    done = subprocess.run([diffstat, "-m", "-w", str(HISTOGRAM_WIDTH), str(diff)],
                          capture_output=True, check=True)
    for line in done.stdout.splitlines()[:-1]:
        # " NAME|%5ld BAR", NAME padded in bytes; the bar gets what NAME leaves of -w.
        name, _, plot = line.partition(b"|")
        width = max(HISTOGRAM_WIDTH - (len(name) - 1) - 8, 10)
        shown = name.decode().strip().replace("\\t", "\t")  # diffstat shows a tab as \t
        stat = stats[os.path.basename(shown)]
        if stat.kind != "text":
            assert plot.decode() == stat.kind
            continue
        counts = (stat.inserted, stat.deleted, stat.modified)
        assert plot[6:].decode() == histogram(counts, scale, width), line


def make_trees(root: Path) -> tuple[Path, Path]:
    """Two trees with every kind of difference diff -r reports."""
    old, new = root / "old", root / "new"
    files = {
        "sub/edited.c": ("".join(f"{n}\n" for n in range(1, 30)),
                         "".join(f"{n}\n" for n in range(1, 30) if n % 7)
                         .replace("12\n", "twelve\n")),
        "gone.c": ("1\n2\n3\n", None),
        "added.c": (None, "a\nb\n"),
        "nonl.txt": ("x\ny", "x\nz"),
        "crlf.txt": ("p\r\nq\r\n", "p\r\nQ\r\nr\r\n"),
        "blob.bin": (b"\0\1\2", b"\0\1\3"),
        "same.txt": ("same\n", "same\n"),
    }
    for name, sides in files.items():
        for tree, content in zip((old, new), sides, strict=True):
            if content is None:
                continue
            path = tree / name
            path.parent.mkdir(parents=True, exist_ok=True)
            data = content if isinstance(content, bytes) else content.encode()
            path.write_bytes(data)
    return old, new


@pytest.mark.parametrize("options", [["-ru"], ["-ruN"], ["-ruN", "-U0"], ["-ru", "-U1"]])
def test_diff_r_of_two_trees_equals_diffstat(diffstat, tmp_path, options):
    old, new = make_trees(tmp_path)
    diff = tmp_path / "trees.diff"
    done = subprocess.run(["diff", *options, "old", "new"], cwd=tmp_path,
                          capture_output=True, check=False)
    assert done.returncode == 1, done.stderr
    diff.write_bytes(done.stdout)
    result = assert_same_as_diffstat(diffstat, diff)
    assert result.totals.files >= 5


@pytest.mark.parametrize("options", [[], ["-M"], ["--binary"], ["-U0"], ["--no-prefix"]])
def test_git_diff_of_two_commits_equals_diffstat(diffstat, tmp_path, options):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    old, new = make_trees(tmp_path)
    repo = tmp_path / "repo"

    def git(*args: str) -> bytes:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=repo, capture_output=True, check=True).stdout

    shutil.copytree(old, repo)
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "old")
    shutil.rmtree(repo / "sub")
    for path in repo.iterdir():
        if path.name != ".git":
            path.unlink()
    shutil.copytree(new, repo, dirs_exist_ok=True)
    git("add", "-A")
    diff = tmp_path / "git.diff"
    diff.write_bytes(git("diff", "--cached", *options))
    assert_same_as_diffstat(diffstat, diff)


# ---- (b) random files, random edits, diff -u

WORDS = st.sampled_from(["a", "b", "c", "d", "", "-- x", "++ y", "@@ -1 +1 @@", "\\ z"])
BLOCKS = st.lists(WORDS, min_size=1, max_size=4)


@st.composite
def edited_files(draw):
    """An old file, a new one made by inserting, deleting and replacing runs of lines,
    whether each ends with a newline, and the context diff -u is given."""
    old = draw(st.lists(WORDS, max_size=14))
    new = list(old)
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, len(new)))
        end = start + draw(st.integers(1, 3))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        if edit == "insert":
            new[start:start] = draw(BLOCKS)
        elif edit == "delete":
            del new[start:end]
        else:
            new[start:end] = draw(BLOCKS)
    return old, new, draw(st.booleans()), draw(st.booleans()), draw(st.sampled_from([0, 1, 3]))


def file_text(lines: list[str], final_newline: bool) -> str:
    text = "\n".join(lines)
    return text + "\n" if lines and final_newline else text


def count_lines(text: str) -> int:
    """Lines as diff sees them: a last line without its newline is still one."""
    return text.count("\n") + (not text.endswith("\n") and text != "")


@given(case=edited_files())
def test_random_edits_equal_diffstat_and_balance_line_counts(case):
    program = find_diffstat()
    old, new, old_newline, new_newline, context = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        old_text, new_text = file_text(old, old_newline), file_text(new, new_newline)
        (root / "old.txt").write_text(old_text)
        (root / "new.txt").write_text(new_text)
        done = subprocess.run(["diff", f"-U{context}", "old.txt", "new.txt"], cwd=root,
                              capture_output=True, check=False)
        (root / "edit.diff").write_bytes(done.stdout)
        result = assert_same_as_diffstat(program, root / "edit.diff")
    totals = result.totals
    # Before -m's merging, '+' lines minus '-' lines is the change in length.
    raw_inserted, raw_deleted = totals.inserted + totals.modified, totals.deleted + totals.modified
    assert raw_inserted - raw_deleted == count_lines(new_text) - count_lines(old_text)
    assert parse(done.stdout).files == result.files
