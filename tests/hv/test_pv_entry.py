"""The PV entry of a patched kernel (patches/xen32/glue.asm, pv_entry), issue 12's
regressions: it runs on the glue's own stack, in the window every address space maps
(the builder's boot stack is mapped only at the kernel's link address, which the
identity map does not cover: a higher-half kernel crashed there); and a fault inside
the glue is reported as pvtool's, not blamed on the kernel's trap table."""

import pytest

from pvtool.machine.cpu import ESI, ESP
from pvtool.machine.stop import StopKind
from pvtool.patch.pipeline import patch_image
from tests.hv.harness import boot
from tests.hv.xenguest import Guest
from tests.patch.tools import GLUE_WINDOW, PAGE, build_kernel

# The kernel records the stack pointer it was entered with, then leaves.
KERNEL = """
.globl _start
_start:
    mov [entry_esp], esp
    mov dx, 0xf4
    xor eax, eax
    out dx, al
spin:
    jmp spin
"""


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pv-entry")
    elf, symbols = build_kernel(workdir, KERNEL, data="entry_esp: .long 0")
    out = workdir / "kernel.pv.elf"
    patch_image(elf, out)
    return Guest(out, symbols)


def test_the_kernel_is_entered_on_the_glues_stack_in_the_window(patched):
    booted = boot(patched)
    booted.run()
    assert booted.machine.stop.kind is StopKind.GUEST_EXIT
    esp = booted.u32("entry_esp")
    assert GLUE_WINDOW < esp <= GLUE_WINDOW + PAGE  # the end of .pvdata's first page


def test_a_fault_in_the_glue_says_it_is_the_glues(patched):
    """start_info where nothing maps it: the PV entry's read of nr_pages faults before
    the kernel has a trap table."""
    booted = boot(patched)
    booted.cpu.write(ESI, 0x90000000)
    booted.run()
    stop = booted.machine.stop
    assert stop.kind is StopKind.CRASH
    assert "#PF at 0x90000020 in pvtool's glue" in stop.reason
    assert "set_trap_table" not in stop.reason
    assert GLUE_WINDOW <= booted.cpu.read(ESP) <= GLUE_WINDOW + PAGE
