"""The wheel `pip install .` builds ships the patch sets: every file under patches/
is package data at pvtool/patches/ (the link patch/patchset.py finds them through),
so a new patch set file cannot be left out of an installed pvtool. `make wheel-check`
(run by .ci/run) goes on to install that wheel and boot hello with it."""

import subprocess
import zipfile
from pathlib import Path

from pvtool.patch.patchset import PATCHES_DIR
from tests.oracles import MAKE_TIMEOUT, REPO_ROOT

PATCHES = REPO_ROOT / "patches"


def build_wheel(folder: Path) -> zipfile.ZipFile:
    """`make wheel` into FOLDER: the same wheel `make wheel-check` installs."""
    make = subprocess.run(["make", "-s", "-C", str(REPO_ROOT), "wheel", f"WHEEL_DIR={folder}"],
                          capture_output=True, text=True, timeout=MAKE_TIMEOUT)
    assert make.returncode == 0, make.stdout + make.stderr
    (wheel,) = folder.glob("pvtool-*.whl")
    return zipfile.ZipFile(wheel)


def test_the_wheel_holds_every_file_of_the_patch_sets(tmp_path):
    shipped = set(build_wheel(tmp_path).namelist())
    files = [f.relative_to(PATCHES).as_posix() for f in PATCHES.rglob("*") if f.is_file()]
    assert any(name.endswith("/rules.toml") for name in files)
    missing = [name for name in files if f"pvtool/patches/{name}" not in shipped]
    assert missing == []


def test_the_package_finds_the_patch_sets_through_its_own_folder():
    assert PATCHES_DIR.parent.name == "pvtool"
    assert PATCHES_DIR.resolve() == PATCHES.resolve()
