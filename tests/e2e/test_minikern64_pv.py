"""minikern64 patched by `pvtool patch` and run as a 64-bit PV domain (issue 15, point 5),
judged against the bytes qemu-system-x86_64 prints for the unpatched kernel
(test_minikern64_qemu.expected_output, which test_minikern64_native holds QEMU and
`pvtool run --native` to).

Where it stands: the PV entry, the Multiboot handoff and seginit run, and the kernel's
first two lines come out as native's; kinit then junk-fills every page from `end` to
PHYSTOP, and .pvdata (linked right after the image by patch/layout64.py) lies there,
its page-table pool mapped read-only by the glue, so the memset faults (docs/ABI.md,
"What the 64-bit port needs from the hypervisor", *Not yet*). The whole run equal to
native's is the goal; until it is reached this file holds the part that works.
"""

from functools import partial
from pathlib import Path

import pytest

from tests import cli
from tests.e2e.test_minikern64_qemu import (
    BOOT_OUTPUT,
)
from tests.oracles import guest_path

pvtool = partial(cli.pvtool, process=True, timeout=120)

# The lines the patched kernel prints before kinit: its Multiboot check and seginit's.
BEFORE_KINIT = b"".join(BOOT_OUTPUT.splitlines(keepends=True)[:2])


@pytest.fixture(scope="module")
def patched(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("minikern64-pv") / "minikern64.pv.elf"
    done = pvtool("patch", guest_path("minikern64"), "-o", out)
    assert done.status == 0, done.stderr
    return out


def test_the_patched_kernel_prints_natives_lines_up_to_kinit(patched):
    done = pvtool("run", "--quiet", patched)
    assert done.stdout_bytes.startswith(BEFORE_KINIT)
    assert BEFORE_KINIT.startswith(b"minikern64: long mode, multiboot handoff, 8 MiB")
