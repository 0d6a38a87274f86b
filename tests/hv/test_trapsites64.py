"""Trap sites of a patched 64-bit kernel: an int3 that pvtool's note trap_sites (64-bit
form: u64 address and count; 32-byte entries, docs/ABI.md "64-bit kernels patched by
xen64") says stands for cli, sti, hlt or iretq is emulated in kernel mode as
patches/xen64's rewrite would have done it, and the kernel goes on after it."""

import pytest

from pvtool.machine.exits import Exit
from pvtool.machine.stop import StopKind
from tests.hv.harness import boot
from tests.hv.xenguest64 import RAM

PVTOOL_TRAP_SITES = 1  # abi/pvtool.py PvtoolNote.trap_sites
HC_IRET = 23  # public/xen.h
ORIGINAL = {"cli": "0xfa", "sti": "0xfb", "hlt": "0xf4", "iretq": "0x48, 0xcf",
            "wbinvd": "0x0f, 0x09",
            "mov dr0, rbx": "0x0f, 0x23, 0xc3", "mov rcx, dr0": "0x0f, 0x21, 0xc1",
            "retfq": "0x48, 0xcb", "retfq 16": "0x48, 0xca, 0x10, 0x00"}


def trap_sites(*sites: tuple[str, str]) -> str:
    """The note and its table, for the guest's data part: (label, original) pairs."""
    entries = "\n".join(f"""
    .quad {label}
    .byte {len(ORIGINAL[name].split(","))}
    .balign 8
    .byte {ORIGINAL[name]}
    .balign 32""" for label, name in sites)
    return f"""
    .section .note.pvtool, "a", @note
    .balign 4
    .long 7, 16, {PVTOOL_TRAP_SITES}
    .asciz "pvtool"
    .balign 4
    .quad trap_table, {len(sites)}
    .data
    .balign 32
trap_table:
{entries}
"""


@pytest.mark.parametrize("names, mask", [(("sti",), 0), (("sti", "cli"), 1)])
def test_cli_and_sti_sites_set_the_upcall_mask_and_go_on(build64, names, mask):
    text = "\n".join(f"site_{i}: int3" for i in range(len(names)))
    booted = boot(build64(text, data=trap_sites(
        *((f"site_{i}", name) for i, name in enumerate(names)))), ram=RAM)
    stop = booted.run()
    assert stop.kind is StopKind.SHUTDOWN, stop
    assert booted.u32("done") == 1
    assert booted.domain.upcall_mask == mask
    assert booted.machine.exits[Exit.TRAP_SITE] == len(names)


IRETQ_TO_THE_KERNEL = """
    mov rax, rsp
    push 0x10              # the bare machine's kernel SS (RPL 0)
    push rax
    push {rflags}
    push 0x08              # and its kernel CS
    lea rax, [rip + returned]
    push rax
    mov rax, 0x1234
site_iretq: int3
    jmp fell_through
returned:
    mov [rip + rax_after], rax
    mov [rip + cs_after], cs
    mov [rip + ss_after], ss
    mov [rip + rsp_after], rsp
"""


@pytest.mark.parametrize("rflags, mask", [(0x202, 0), (0x002, 1)])
def test_an_iretq_site_returns_to_the_kernel_on_xens_flat_selectors(build64, rflags, mask):
    guest = build64(IRETQ_TO_THE_KERNEL.format(rflags=rflags), data=trap_sites(
        ("site_iretq", "iretq")) + """
rax_after: .quad 0
cs_after: .quad 0
ss_after: .quad 0
rsp_after: .quad 0
""")
    booted = boot(guest, ram=RAM)
    stop = booted.run()
    assert stop.kind is StopKind.SHUTDOWN, stop
    assert booted.u32("rax_after") == 0x1234
    assert booted.u32("cs_after") == 0xE033
    assert booted.u32("ss_after") == 0xE02B
    assert booted.u32("rsp_after") == guest["stack_top"] & 0xFFFFFFFF
    assert booted.domain.upcall_mask == mask
    assert booted.machine.exits[Exit.TRAP_SITE] == 1


IRETQ_TO_USER_MODE = """
    mov rax, rsp
    push 0x2b              # a user SS and CS (RPL 3)
    push rax
    push 0x202
    push 0x33
    lea rax, [rip + fell_through]
    push rax
site_iretq: int3
    jmp fell_through
glue_iret:
    mov [rip + rsp_at_glue], rsp
    mov rax, [rsp + 8]
    mov [rip + cs_at_glue], rax
    add rsp, 40
"""


def test_an_iretq_site_to_user_mode_goes_on_in_the_glues_iretq(build64):
    """The glue brings the user L4 in step on its way to user mode (pv_iret), so an
    iretq site returning there continues at the entry the glue recorded in vcpu_regs
    (iret_entry), the frame still on the stack, and no HYPERVISOR_iret is made here."""
    guest = build64(IRETQ_TO_USER_MODE, data=trap_sites(("site_iretq", "iretq")) + """
regs: .skip 160
    .quad glue_iret        # vcpu_regs_64.iret_entry
rsp_at_glue: .quad 0
cs_at_glue: .quad 0
""")
    booted = boot(guest, ram=RAM)
    booted.domain.regs_block = guest["regs"]
    stop = booted.run()
    assert stop.kind is StopKind.SHUTDOWN, stop
    assert booted.u32("done") == 1
    assert booted.u32("cs_at_glue") == 0x33
    assert booted.u32("rsp_at_glue") == (guest["stack_top"] - 40) & 0xFFFFFFFF
    assert booted.domain.hypercalls_by_number[HC_IRET] == 0
    assert booted.machine.exits[Exit.TRAP_SITE] == 1


RETFQ_TO_THE_KERNEL = """
    mov rbx, rsp
    push 0x5555            # bytes retfq 16 releases
    push 0x6666
    push 0x08              # the bare machine's kernel CS (RPL 0)
    lea rax, [rip + returned]
    push rax
site_retfq: int3
    nop
    jmp fell_through
returned:
    mov [rip + cs_after], cs
    sub rbx, rsp
    mov [rip + released], rbx
"""


@pytest.mark.parametrize("name, left", [("retfq", 16), ("retfq 16", 0)])
def test_a_retfq_site_returns_to_the_kernel_and_releases_its_bytes(build64, name, left):
    guest = build64(RETFQ_TO_THE_KERNEL, data=trap_sites(("site_retfq", name))
                    + "cs_after: .quad 0\nreleased: .quad 0\n")
    booted = boot(guest, ram=RAM)
    stop = booted.run()
    assert stop.kind is StopKind.SHUTDOWN, stop
    assert booted.u32("cs_after") == 0xE033
    assert booted.u32("released") == left
    assert booted.machine.exits[Exit.TRAP_SITE] == 1


def test_a_retfq_site_to_a_user_selector_crashes_the_domain(build64):
    guest = build64(RETFQ_TO_THE_KERNEL.replace("push 0x08 ", "push 0x2b "),
                    data=trap_sites(("site_retfq", "retfq"))
                    + "cs_after: .quad 0\nreleased: .quad 0\n")
    stop = boot(guest, ram=RAM).run()
    assert stop.kind is StopKind.CRASH
    assert "retfq to cs 0x2b, another ring's code" in stop.reason


def test_debug_register_sites_go_through_set_and_get_debugreg(build64):
    guest = build64("""
    mov rbx, 0xffffffff80123000
site_set: int3
    nop
    nop
site_get: int3
    nop
    nop
    mov [rip + dr0_read], rcx
""", data=trap_sites(("site_set", "mov dr0, rbx"), ("site_get", "mov rcx, dr0"))
        + "dr0_read: .quad 0\n")
    booted = boot(guest, ram=RAM)
    stop = booted.run()
    assert stop.kind is StopKind.SHUTDOWN, stop
    assert booted.domain.debug_registers.read(0) == 0xFFFF_FFFF_8012_3000
    assert booted.u32s("dr0_read", 2) == (0x8012_3000, 0xFFFF_FFFF)
    assert booted.machine.exits[Exit.TRAP_SITE] == 2


def test_a_hlt_site_with_events_masked_halts_for_good(build64):
    guest = build64("site_hlt: int3", data=trap_sites(("site_hlt", "hlt")))
    stop = boot(guest, ram=RAM).run()
    assert stop.kind is StopKind.HALTED
    assert "hlt with events masked" in stop.reason


def test_a_site_of_another_class_crashes_the_domain_naming_it(build64):
    guest = build64("site_wbinvd: int3", data=trap_sites(("site_wbinvd", "wbinvd")))
    booted = boot(guest, ram=RAM)
    stop = booted.run()
    assert stop.kind is StopKind.CRASH
    assert f"trap site {guest['site_wbinvd']:#x} (0f09) cannot be emulated" in stop.reason


def test_an_int3_that_is_no_trap_site_is_still_the_kernels_breakpoint(build64):
    """No handler for vector 3: the int3 is bounced, and with no trap table the domain
    is crashed, as before trap sites existed."""
    guest = build64("site_cli: int3\n    int3", data=trap_sites(("site_cli", "cli")))
    booted = boot(guest, ram=RAM)
    stop = booted.run()
    assert stop.kind is StopKind.CRASH
    assert "#BP" in stop.reason
    assert booted.machine.exits[Exit.TRAP_SITE] == 1
