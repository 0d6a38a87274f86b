"""A guest of guests/ patched with `pvtool patch`, for the end-to-end tests."""

from pathlib import Path

from tests import cli
from tests.oracles import guest_path


def patch_guest(name: str, directory: Path) -> Path:
    """build/guests/NAME.elf patched into DIRECTORY; the patch must succeed."""
    out = directory / f"{name}.pv.elf"
    done = cli.pvtool("patch", str(guest_path(name)), "-o", str(out), process=True,
                      timeout=120)
    assert done.status == 0, done.stderr
    return out
