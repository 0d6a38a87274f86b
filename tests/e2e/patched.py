"""A guest of guests/ patched with `pvtool patch`, for the end-to-end tests."""

import fcntl
import functools
import os
import shutil
from pathlib import Path

from tests import cli
from tests.oracles import BUILD_DIR, GUEST_BUILD_LOCK, guest_path

PATCHED_DIR = BUILD_DIR / "patched"


def patch_guest(name: str, directory: Path) -> Path:
    """build/guests/NAME.elf patched into DIRECTORY; the patch must succeed."""
    out = directory / f"{name}.pv.elf"
    done = cli.pvtool("patch", str(guest_path(name)), "-o", str(out), process=True,
                      timeout=120)
    assert done.status == 0, done.stderr
    return out


@functools.cache
def patched_once(name: str) -> Path:
    """build/patched/NAME.pv.elf, patched once per test process while holding the lock
    the guests' build takes, so that no worker patches while make rebuilds the guest.
    The patch is written beside it and renamed into place: a worker booting the
    previous copy keeps reading a whole file."""
    guest_path(name)  # make first: it takes the same lock
    PATCHED_DIR.mkdir(parents=True, exist_ok=True)
    with GUEST_BUILD_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        scratch = PATCHED_DIR / f"{os.getpid()}"
        scratch.mkdir(exist_ok=True)
        fresh = patch_guest(name, scratch)
        patched = fresh.replace(PATCHED_DIR / fresh.name)
        shutil.rmtree(scratch)  # the patch's report and listing diff
        return patched
