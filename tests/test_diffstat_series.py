"""pvtool diffstat of a series of diffs (several DIFF arguments, or a folder of *.diff
with its diffstat.toml): the hand port of minikern (patches/minikern-xen) counted as
Debian's `diffstat -m` counts the same diffs, sorted into Table 2's categories by path,
its share of minikern's own sources, beside the automatic port `pvtool patch` makes of
the same kernel; and a series that applies only in order."""

import csv
import fnmatch
import json
import shutil
import subprocess
import tomllib

import pytest

from pvtool.diffstat import xen_table2
from pvtool.diffstat.port import UNCATEGORIZED, measure_port
from pvtool.diffstat.series import SETTINGS_FILE
from pvtool.errors import ImageError
from tests.cli import patched_guest, pvtool
from tests.oracles import REPO_ROOT
from tests.test_diffstat_oracle import find_diffstat

PORT = REPO_ROOT / "patches" / "minikern-xen"
GUESTS = REPO_ROOT / "guests"
DIFFS = sorted(PORT.glob("*.diff"))


@pytest.fixture(scope="module")
def diffstat() -> str:
    return find_diffstat()


def oracle_counts(program: str, *diffs) -> dict[str, tuple[int, int, int]]:
    """`diffstat -m -t -p1` of the diffs: (inserted, deleted, modified) by path, the
    diffs' a/ and b/ stripped."""
    done = subprocess.run([program, "-m", "-t", "-p1", *map(str, diffs)],
                          capture_output=True, text=True, check=True)
    return {name: (int(i), int(d), int(m))
            for i, d, m, name in csv.reader(done.stdout.splitlines()[1:])}


def oracle_summary(program: str, *diffs) -> str:
    """diffstat -m -p1's summary line: with -p1 a file two diffs name is one file (without
    it diffstat names a file "b/k/m.c" in one diff and "k/m.c" in the next)."""
    done = subprocess.run([program, "-m", "-p1", *map(str, diffs)], capture_output=True,
                          text=True, check=True)
    return done.stdout.splitlines()[-1]


def settings() -> dict:
    return tomllib.loads((PORT / SETTINGS_FILE).read_text())


# ---- the hand port, against diffstat

def test_the_series_counts_are_diffstats_file_by_file(diffstat):
    port = measure_port((PORT,), GUESTS)
    ours = {f.name.split("/", 1)[1]: (f.inserted, f.deleted, f.modified)
            for f in port.diffstat.files}
    assert ours == oracle_counts(diffstat, *DIFFS)
    assert port.diffstat.summary_line() == oracle_summary(diffstat, *DIFFS)
    assert port.kind == "diff series"


def test_categories_come_from_the_paths_as_diffstat_toml_says(diffstat):
    """New xen/ files and the Xen header are Xen-specific, the block frontend's files
    the block driver, changes to minikern's own files architecture-independent: each
    row is the '+' lines (inserted + modified) diffstat counts in its files."""
    expected = dict.fromkeys((c.name for c in xen_table2.CATEGORIES), 0)
    for name, (inserted, _, modified) in oracle_counts(diffstat, *DIFFS).items():
        expected[category_of(name)] += inserted + modified
    rows = {row.name: row.total for row in measure_port((PORT,), GUESTS).categories()}
    assert rows == expected
    assert expected[xen_table2.HYPERVISOR_SPECIFIC] > 0
    assert expected[xen_table2.ARCH_INDEPENDENT] > 0


def category_of(name: str) -> str:
    if name in ("xen/blkfront.c", "xen/blkif.h"):
        return xen_table2.BLOCK_DRIVER
    if name.startswith("xen/") or name == "xenhello/xen.h":
        return xen_table2.HYPERVISOR_SPECIFIC
    return xen_table2.ARCH_INDEPENDENT


def test_the_share_is_of_minikerns_own_sources_as_wc_counts_them():
    globs = settings()["sources"]
    files = sorted(p for p in GUESTS.rglob("*") if p.is_file() and any(
        fnmatch.fnmatchcase(p.relative_to(GUESTS).as_posix(), g) for g in globs))
    done = subprocess.run(["wc", "-l", *map(str, files)], capture_output=True, text=True,
                          check=True)
    total = int(done.stdout.splitlines()[-1].split()[0])
    assert any(f.name == "main.c" for f in files) and any(f.suffix == ".S" for f in files)
    port = measure_port((PORT,), GUESTS)
    assert (port.baseline.lines, port.baseline.files) == (total, len(files))
    assert port.share_percent == pytest.approx(100 * port.added_or_modified / total)


def test_several_diff_arguments_count_as_their_folder(diffstat):
    """Given as arguments, the diffs have no diffstat.toml: the same counts,
    uncategorized, and the baseline the whole tree they apply to."""
    folder = measure_port((PORT,), GUESTS)
    loose = measure_port(tuple(DIFFS), GUESTS)
    assert loose.diffstat.files == folder.diffstat.files
    assert [(r.name, r.total) for r in loose.categories()][-1] == (
        UNCATEGORIZED, folder.added_or_modified)
    wc = subprocess.run(f"cat $(find {GUESTS} -type f) | wc -l", shell=True,
                        capture_output=True, text=True, check=True)
    assert loose.baseline.lines == int(wc.stdout)


# ---- beside the automatic port of the same kernel

@pytest.fixture(scope="module")
def automatic(tmp_path_factory):
    """minikern patched by `pvtool patch`: its listing diff."""
    return patched_guest("minikern", tmp_path_factory.mktemp("auto")).with_suffix(".diff")


def test_one_command_prints_table_2_with_both_ports_and_xens(automatic, diffstat):
    done = pvtool("diffstat", PORT, "--baseline", GUESTS, "--versus", automatic,
                  "--json", "-")
    assert done.status == 0, done.output
    data = json.loads(done.stdout)
    hand = sum(i + m for i, _, m in oracle_counts(diffstat, *DIFFS).values())
    (listing, ) = oracle_counts(diffstat, automatic).values()
    assert data["lines_modified_or_added"] == hand
    assert data["versus"]["lines_modified_or_added"] == listing[0] + listing[2]
    assert data["versus"]["input"]["kind"] == "listing diff"
    assert data["baseline"]["sources"] == settings()["sources"]
    shown = pvtool("diffstat", PORT, "--baseline", GUESTS, "--versus", automatic)
    assert shown.status == 0, shown.output
    lines = shown.stdout.splitlines()
    header = "\n".join(lines[:lines.index(next(x for x in lines if x.startswith("OS")))+1])
    assert "versus" in header and "Linux" in header
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[1:] == ["0", str(hand), str(hand), str(listing[0] + listing[2]),
                                 str(xen_table2.LINUX_TOTAL), str(xen_table2.XP_TOTAL)]


# ---- a series applies in order

def write_tree(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.fixture
def versions(tmp_path):
    """v0 -> v1 (a file changed, one created) -> v2 (both changed again): the two
    diffs `diff -ruN a b` makes, 1.diff and 2.diff, and the trees v0, v1, v2."""
    trees = [{"k/main.c": "a\nb\nc\n"},
             {"k/main.c": "a\nB\nc\n", "x/new.c": "one\ntwo\n"},
             {"k/main.c": "a\nB\nc\nd\n", "x/new.c": "one\n2\n"}]
    for index, files in enumerate(trees):
        write_tree(tmp_path / f"v{index}", files)
    for index in (1, 2):
        step = tmp_path / f"step{index}"
        write_tree(step / "a", trees[index - 1])
        write_tree(step / "b", trees[index])
        done = subprocess.run(["diff", "-ruN", "a", "b"], cwd=step, capture_output=True,
                              check=False)
        assert done.returncode == 1, done.stderr
        (tmp_path / f"{index}.diff").write_bytes(done.stdout)
    return tmp_path


def test_a_series_applies_to_what_the_diffs_before_it_leave(versions, diffstat):
    diffs = (versions / "1.diff", versions / "2.diff")
    port = measure_port(diffs, versions / "v0")
    assert port.baseline.lines == 3
    assert {f.name: (f.inserted, f.deleted, f.modified) for f in port.diffstat.files} \
        == {f"b/{name}": counts for name, counts in oracle_counts(diffstat, *diffs).items()}
    assert port.diffstat.summary_line() == oracle_summary(diffstat, *diffs)
    work = versions / "work"
    shutil.copytree(versions / "v0", work)
    for diff in diffs:  # GNU patch agrees: the series, in order, makes v2 of v0
        subprocess.run(["patch", "-s", "-p1", "-i", diff], cwd=work, check=True)
    assert contents(work) == contents(versions / "v2")


def contents(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file()}


def test_a_series_out_of_order_does_not_apply(versions):
    with pytest.raises(ImageError, match=r"2.diff: does not apply to .*v0: "
                                         r"a/x/new.c is not in it"):
        measure_port((versions / "2.diff", versions / "1.diff"), versions / "v0")
    with pytest.raises(ImageError, match=r"1.diff: does not apply .*k/main.c line 2: "
                                         r"the diff expects 'b', the file has 'B'"):
        measure_port((versions / "1.diff", versions / "2.diff"), versions / "v1")


@pytest.mark.parametrize("case, status, message", [
    ("twice", 64, "1.diff: given twice; a series names each diff once"),
    ("listing", 64, "k.pv.diff: is a listing diff, which is measured alone"),
    ("empty_folder", 66, "v0: is a directory, not a diff (nor a patch set: no "
                         "rules.toml; nor a series: no *.diff)"),
    ("bad_settings", 65, f"series/{SETTINGS_FILE}: unknown key 'source'"),
])
def test_bad_series_get_one_line_and_its_status(versions, monkeypatch, case, status,
                                                message):
    monkeypatch.chdir(versions)
    (versions / "k.pv.diff").write_text("# pvtool-baseline-lines: 4\n")
    (versions / "series").mkdir()
    (versions / "series" / "1.diff").write_bytes((versions / "1.diff").read_bytes())
    (versions / "series" / SETTINGS_FILE).write_text('source = ["k/*"]\n')
    args = {"twice": ["1.diff", "1.diff"], "listing": ["1.diff", "k.pv.diff"],
            "empty_folder": ["v0"], "bad_settings": ["series"]}[case]
    done = pvtool("diffstat", *args)
    assert done.status == status, done.output
    assert done.stderr.startswith(f"pvtool: error: {message}")
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.output
