"""`--json` and `--plot` are checked before anything is measured: a bad path is one
error line and status 73 (64 for a format matplotlib cannot write), and nothing is
created; so is a pvtool without its patch set, which could not bench the PV mode."""

import os
import shutil
import tempfile
from pathlib import Path

from pvtool.patch import patchset
from tests.cli import pvtool
from tests.oracles import require_tool


def refused(result, status: int, *words: str) -> None:
    assert result.status == status, result.output
    line = result.error_line()
    for word in words:
        assert word in line
    assert result.stdout == ""


def test_json_in_a_missing_folder_is_73_and_creates_nothing(tmp_path, guests):
    result = pvtool("bench", guests("hello"), "--json", tmp_path / "absent" / "out.json")
    refused(result, 73, "--json", "no folder")
    assert list(tmp_path.iterdir()) == []


def test_json_onto_a_folder_is_73(tmp_path, guests):
    refused(pvtool("bench", guests("hello"), "--json", tmp_path), 73, "is a folder")


def test_json_in_a_folder_nobody_may_write_is_73(guests):
    """As nobody (root may write anywhere) into a folder only its owner may write."""
    folder = Path(tempfile.mkdtemp(prefix="pvtool-unwritable-"))
    image = Path(shutil.copy2(guests("hello"), folder))
    image.chmod(0o644)
    folder.chmod(0o755)
    nobody = ((require_tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups")
              if os.geteuid() == 0 else ())
    if not nobody:
        folder.chmod(0o555)
    try:
        result = pvtool("bench", image, "--json", folder / "out.json", installed=True,
                        wrapper=nobody, env={"HOME": str(folder)})
        refused(result, 73, "not writable")
        assert sorted(folder.iterdir()) == [image]
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def test_plot_in_a_format_matplotlib_cannot_write_is_64(tmp_path, guests):
    result = pvtool("bench", guests("hello"), "--plot", tmp_path / "chart.txt")
    refused(result, 64, "--plot", ".png")
    assert list(tmp_path.iterdir()) == []


def test_plot_in_a_missing_folder_is_73(tmp_path, guests):
    result = pvtool("bench", guests("hello"), "--plot", tmp_path / "absent" / "chart.png")
    refused(result, 73, "--plot", "no folder")
    assert list(tmp_path.iterdir()) == []


def test_no_patch_set_is_66_before_measuring(tmp_path, monkeypatch, guests):
    monkeypatch.setattr(patchset, "PATCHES_DIR", tmp_path)  # an install without patches/
    result = pvtool("bench", guests("hello"), "--json", tmp_path / "out.json")
    refused(result, 66, "no patch set")
    assert not (tmp_path / "out.json").exists()
