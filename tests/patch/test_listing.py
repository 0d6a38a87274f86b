"""The listing diff is built from the rewritten ranges alone, never by diffing whole
listings; GNU patch and GNU diff judge it: it applies to the original listing exactly,
and its hunks are the ones `diff -u` writes between the original listing and the result.
"""

import json
import subprocess

import pytest

from pvtool.image.elf import load_elf
from pvtool.patch.listing import Listing, Symbolizer
from pvtool.patch.pipeline import discover_code, patch_image
from tests.oracles import guest_path, require_tool

HEADERS = ("---", "+++")


@pytest.fixture(scope="module", params=["hello", "minikern"])
def patched(request, tmp_path_factory):
    """(the original listing's file, the listing diff, the report) for a guest."""
    elf = guest_path(request.param)
    workdir = tmp_path_factory.mktemp(f"listing-{request.param}")
    out = workdir / f"{request.param}.pv.elf"
    patch_image(elf, out)
    image = load_elf(elf)
    listing = Listing(discover_code(image),
                      Symbolizer([(s.value, s.name) for s in image.function_symbols()]))
    original = workdir / "original.lst"
    original.write_text("\n".join(listing.lines(0, len(listing))) + "\n")
    report = json.loads(out.with_suffix(".json").read_text())
    return original, out.with_suffix(".diff").read_text(), report


def applied(original, diff: str):
    """The listing GNU patch makes of ORIGINAL and DIFF, refusing any fuzz or offset."""
    result = original.with_suffix(".new")
    done = subprocess.run([require_tool("patch"), "--fuzz=0", "-o", str(result),
                           str(original)], input=diff.split("\n", 1)[1], text=True,
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "offset" not in done.stdout and "fuzz" not in done.stdout, done.stdout
    return result


def test_the_diff_applies_to_the_original_listing_exactly(patched):
    original, diff, _ = patched
    lines = applied(original, diff).read_text().splitlines()
    added = [line[1:] for line in diff.splitlines() if line.startswith("+")
             and not line.startswith(HEADERS)]
    assert added and set(added) <= set(lines)


def test_the_hunks_are_the_ones_gnu_diff_writes(patched):
    original, diff, _ = patched
    result = applied(original, diff)
    done = subprocess.run([require_tool("diff"), "-u", str(original), str(result)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1  # they differ
    gnu = [line for line in done.stdout.splitlines() if not line.startswith(HEADERS)]
    ours = [line for line in diff.splitlines()[1:] if not line.startswith(HEADERS)]
    assert ours == gnu


def test_every_rewritten_site_is_a_removed_line(patched):
    _, diff, report = patched
    removed = {int(line[1:9], 16) for line in diff.splitlines()
               if line.startswith("-") and not line.startswith(HEADERS)}
    rewritten = {int(site["address"], 16) for site in report["sites"]
                 if site["placement"] != "kept"}
    assert rewritten and rewritten <= removed


def test_only_the_lines_the_diff_shows_are_formatted(tmp_path, monkeypatch):
    """The listing diff costs what it shows, not the kernel's size: an original line is
    read only for a hunk (as a removed line or context), at most twice (once to match
    it against what replaced it, once to print it). Linux has 3 million lines; a diff
    built from whole listings formatted every one of them, twice."""
    from pvtool.patch import listing

    read = []
    item = listing.Listing.item
    monkeypatch.setattr(listing.Listing, "item",
                        lambda self, index: read.append(index) or item(self, index))
    out = tmp_path / "minikern.pv.elf"
    patch_image(guest_path("minikern"), out)
    body = out.with_suffix(".diff").read_text().splitlines()[3:]
    shown = sum(1 for line in body if line[:1] in (" ", "-"))
    assert 0 < len(read) <= 2 * shown
    assert len(set(read)) <= shown
