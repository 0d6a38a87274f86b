"""pushf, iret, sldt and str emulated at the trap sites `pvtool patch` leaves for them
(hv/emulate.py), in patched Multiboot kernels run under the hypervisor in ring 1, with
QEMU running the unpatched kernels in ring 0 as the oracle: the same bytes on COM1.

A pushf or iret becomes a trap site when branch targets leave no 5-byte window around
it (Linux has such sites); str and sldt with a memory destination always do, since
xen32's templates write a register destination only. The kernels share
test_emulate_segments.py's GDT, TSS, records and printer.
"""

import pytest

from pvtool.machine.stop import StopKind
from tests.hv.test_emulate_segments import (
    PRINT_RECORDS,
    QUIET_START,
    TSS_BASE,
    assert_one_trap_site,
    patched_kernel,
    printed,
    run_patched,
)
from tests.oracles import run_qemu
from tests.patch.tools import read_virtual

PROLOGUE = QUIET_START + """
    lgdt [gdt_pointer]
"""

# The pushfd at `site` is a branch target and so is the pop after it (an immediate
# names it): no window. It runs with IF clear, then set; CF is set both times.
PUSHF = PROLOGUE + r"""
    xor ebx, ebx
    mov edx, offset after
    stc
site:
    pushfd
after:
    pop eax
    and eax, 0x201               /* IF and CF as pushfd stored them */
    mov [records + ebx*4], eax
    inc ebx
    sti
    cmp ebx, 2
    jae done
    stc
    jmp site
done:
    cli
    mov [records + 8], esp       /* every push was popped */
    jmp report
""" + PRINT_RECORDS

# An iretd reached only by a jump: a branch target after a jmp, no window. Its frame
# names the kernel's CS as `push cs` reads it, EFLAGS with IF set, and `back`.
IRET = PROLOGUE + r"""
    {flags}
    pushfd
    or dword ptr [esp], 0x200
    push cs
    push offset back
    mov eax, 0x600d
    jmp site
    .p2align 4
site:
    iretd
back:
    mov [records], eax           /* EAX crossed the iret untouched */
    pushfd
    pop eax
    and eax, 0x200
    mov [records + 4], eax       /* IF from the frame */
    mov [records + 8], esp       /* the frame was popped */
    cli
    jmp report
""" + PRINT_RECORDS

# NT set (popfd in ring 0 or 1 may set it): the iret is a return to the previous task.
NESTED_TASK = r"""
    pushfd
    or dword ptr [esp], 0x4000
    popfd"""

# str and sldt into memory, after ltr 0x28 (its TSS base filled in) and lldt 0: the
# records' high halves keep their filler, as only 16 bits are stored.
LOAD_SELECTORS = PROLOGUE + TSS_BASE + r"""
    xor eax, eax
    lldt ax
    mov ax, 0x28
    ltr ax
"""
SELECTORS = LOAD_SELECTORS + r"""
site:
    str word ptr [records]
site_sldt:
    sldt word ptr [records + 4]
    jmp report
""" + PRINT_RECORDS

# str into a 32-bit and a 16-bit register, both trap sites: `site` follows a jmp and
# the instructions after both sites are branch targets (immediates name them).
SELECTOR_REGISTERS = LOAD_SELECTORS + r"""
    mov eax, 0xffffffff
    mov ecx, 0xffffffff
    mov edx, offset site_str16
    mov edx, offset after
    jmp site
site:
    str eax
site_str16:
    str cx
after:
    mov [records], eax
    mov [records + 4], ecx
    jmp report
""" + PRINT_RECORDS


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("flags-and-selector-kernels")


def test_a_pushf_trap_site_pushes_the_virtual_if(kernel_dir):
    """EFLAGS with IF from the upcall mask (clear after cli, set after sti), the other
    flags as they are: QEMU prints the same bytes."""
    elf, out, symbols = patched_kernel(kernel_dir, "pushf", PUSHF, 3)
    assert_runs_as_on_qemu(elf, out, symbols, original=b"\x9c", runs=2,
                           expected=printed(0x001, 0x201, symbols["kernel_stack_top"]))


def test_an_iret_trap_site_returns_as_hypervisor_iret(kernel_dir):
    """A frame of the kernel's ring-0 CS returns to ring 1 (the selector's RPL made 1,
    as pv_iret does), with IF from the frame unmasking events and EAX kept."""
    elf, out, symbols = patched_kernel(kernel_dir, "iret", IRET.format(flags=""), 3)
    assert_runs_as_on_qemu(elf, out, symbols, original=b"\xcf", runs=1,
                           expected=printed(0x600D, 0x200, symbols["kernel_stack_top"]))


def assert_runs_as_on_qemu(elf, out, symbols, *, original: bytes, runs: int,
                           expected: bytes) -> None:
    """`site` is a trap site for ORIGINAL, run RUNS times under PV, and the patched
    kernel under PV and the unpatched one on QEMU print EXPECTED and exit with 0."""
    assert_one_trap_site(out, symbols, original)
    booted = run_patched(out, symbols)
    assert booted.machine.stop.kind is StopKind.GUEST_EXIT and booted.machine.stop.code == 0
    assert bytes(booted.output) == expected
    assert booted.machine.exits["trap-site"] == runs
    native = run_qemu(elf)
    assert (native.guest_code, native.stdout) == (0, expected)


def test_an_iret_with_nt_set_stops_the_domain_naming_the_task_return(kernel_dir):
    elf, out, symbols = patched_kernel(kernel_dir, "iret_nt", IRET.format(flags=NESTED_TASK),
                                       3)
    booted = run_patched(out, symbols)
    assert booted.machine.stop.kind is StopKind.CRASH
    assert booted.machine.stop.reason.endswith(
        "cannot be emulated: EFLAGS.NT is set: a task return (hardware task switch), "
        "which a PV domain cannot make")
    assert f"trap site {symbols['site']:#010x} (cf)" in booted.machine.stop.reason
    assert booted.output == b""


def test_str_and_sldt_trap_sites_store_the_loaded_selectors(kernel_dir):
    """16 bits each: 0x28 from ltr, 0 from lldt; the sldt is a trap site too."""
    elf, out, symbols = patched_kernel(kernel_dir, "selectors", SELECTORS, 2)
    assert read_virtual(out, symbols["site_sldt"], 1) == b"\xcc"
    original = bytes.fromhex("0f000d") + symbols["records"].to_bytes(4, "little")
    assert_runs_as_on_qemu(elf, out, symbols, original=original, runs=2,
                           expected=printed(0xEEEE0028, 0xEEEE0000))


def test_str_trap_sites_zero_extend_into_a_32_bit_register_only(kernel_dir):
    elf, out, symbols = patched_kernel(kernel_dir, "selector_registers", SELECTOR_REGISTERS, 2)
    assert read_virtual(out, symbols["site_str16"], 1) == b"\xcc"
    assert_runs_as_on_qemu(elf, out, symbols, original=bytes.fromhex("0f00c8"), runs=2,
                           expected=printed(0x28, 0xFFFF0028))
