"""Port I/O without I/O privilege, as Xen answers a 32-bit PV guest: #GP(0) in the
guest at the instruction, which the guest's kernel handles; the domain is not crashed
and the port is never touched (xen/arch/x86/pv/emul-priv-op.c: guest_io_okay() and
iopl_ok(); the #GP is do_general_protection's, with the hardware's error code 0).

Privilege comes from physdev_op set_iopl (the kernel counts as ring 1, or ring 0
under VMASST_TYPE_architectural_iopl; user mode as ring 3) or from the I/O bitmap of
physdev_op set_iobitmap (xen/arch/x86/physdev.c): a port whose bit is clear and that
lies below nr_ports. The serial port's line status register (0x3FD) reads 0x60 (the
transmitter empty and idle) on the 16550 pvtool's machine and QEMU both model.
"""

import pytest

from tests.hv.harness import hypercall
from tests.hv.test_traps import (
    RECORDING_BSS,
    RECORDING_DATA,
    RECORDING_HANDLERS,
    SETUP,
    USER,
    USER_BSS,
    USER_DATA,
    USER_HANDLERS,
    records,
)
from tests.hv.xenguest import DEFAULT_NOTES, EFAULT, EINVAL, HC, PAE_NOTES, neg

GP = 13
FLAT_RING3_CS = 0xE02B
LSR, LSR_IDLE = 0x3FD, 0x60
PHYSDEVOP_SET_IOPL, PHYSDEVOP_SET_IOBITMAP = 6, 7
MARK = 0x5A5A5A5A

PRIVILEGE_DATA = r"""
iopl: .long 0
iopl_rc: .long 0xffffffff
bitmap_arg: .long io_bitmap, 0
bitmap_rc: .long 0xffffffff
out: .fill 8, 4, 0x5a5a5a5a
/* the I/O bitmap: every port refused but the serial port's eight (0x3F8-0x3FF) */
io_bitmap: .fill 0x3f8 / 8, 1, 0xff
    .byte 0
    .fill 8192 - 0x3f8 / 8 - 1, 1, 0xff
"""


def privilege(iopl: int | None = None, bitmap_ports: int | None = None,
              architectural: bool = False) -> str:
    """Kernel code granting what the test asks: set_iopl, set_iobitmap, the assist."""
    text = ""
    if iopl is not None:
        text += f"""
    mov dword ptr [iopl], {iopl}
    mov ebx, {PHYSDEVOP_SET_IOPL}
    mov ecx, offset iopl
    HYPERCALL physdev_op
    mov [iopl_rc], eax
"""
    if bitmap_ports is not None:
        text += f"""
    mov dword ptr [bitmap_arg + 4], {bitmap_ports}
    mov ebx, {PHYSDEVOP_SET_IOBITMAP}
    mov ecx, offset bitmap_arg
    HYPERCALL physdev_op
    mov [bitmap_rc], eax
"""
    if architectural:
        text += """
    mov ebx, 0      /* VMASST_CMD_enable */
    mov ecx, 4      /* VMASST_TYPE_architectural_iopl */
    HYPERCALL vm_assist
"""
    return text


# The #GP handler first keeps the registers a port instruction would change.
SAVING_GP_HANDLER = r"""
saving_gp_handler:
    mov [at_fault], eax
    mov [at_fault + 4], ecx
    mov [at_fault + 8], esi
    mov [at_fault + 12], edi
    RECORD 13, 1
    RESUME
"""
SAVING_DATA = RECORDING_DATA.replace("TRAP 13, 0, gp_handler", "TRAP 13, 0, saving_gp_handler")


def kernel_run(run_guest, grant: str, text: str, notes=DEFAULT_NOTES):
    return run_guest(SETUP + grant + text, handlers=RECORDING_HANDLERS + SAVING_GP_HANDLER,
                     data=SAVING_DATA + PRIVILEGE_DATA + "at_fault: .fill 4, 4, 0",
                     bss=RECORDING_BSS, notes=notes)


def user_run(run_guest, grant: str, user: str):
    return run_guest(grant + USER, handlers=USER_HANDLERS.replace("{user}", user),
                     data=USER_DATA + PRIVILEGE_DATA, bss=USER_BSS)


READ_LSR = f"""
    mov dword ptr [resume], offset after
    mov eax, {MARK:#x}
    mov dx, {LSR:#x}
the_insn:
    in al, dx
after:
    mov [out], eax
"""


@pytest.mark.parametrize("insn, setup", [
    ("in al, dx", ""), ("in eax, dx", ""), ("out dx, al", ""), ("out 0x80, al", ""),
    ("in al, 0x3fd", ""),
    ("rep insb", "mov edi, offset out + 8\n    mov ecx, 4"),
    ("rep outsd", "mov esi, offset out + 8\n    mov ecx, 2"),
    ("insw", "mov edi, offset out + 8"),
], ids=["in-dx", "in-eax", "out-dx", "out-imm", "in-imm", "rep-insb", "rep-outsd", "insw"])
def test_port_io_without_privilege_is_a_gp_0_at_the_instruction_that_changes_nothing(
        run_guest, insn, setup):
    booted = kernel_run(run_guest, "", f"""
    mov dword ptr [resume], offset after
    mov eax, {MARK:#x}
    mov dx, {LSR:#x}
    {setup}
    mov [out], ecx
    mov [out + 4], esi
    mov [out + 12], edi
the_insn:
    {insn}
after:
""")
    (fault,) = records(booted)
    assert (fault["vector"], fault["error"], fault["eip"]) == (GP, 0, booted.guest["the_insn"])
    ecx, esi, buffer, edi = booted.u32s("out", 4)
    assert booted.u32s("at_fault", 4) == (MARK, ecx, esi, edi)  # as they were
    # the string's buffer untouched, but for QEMU's zeros where an `ins` would store
    # (docs/ABI.md, departures): one byte of insb, two of insw
    zeros = {"rep insb": 1, "insw": 2}.get(insn, 0)
    assert buffer == MARK >> (8 * zeros) << (8 * zeros)
    assert bytes(booted.output) == b""  # nothing reached the serial port
    assert booted.machine.stop.reason == "shutdown (poweroff)"  # the domain lives on


@pytest.mark.parametrize("notes", [DEFAULT_NOTES, PAE_NOTES], ids=["2level", "pae"])
def test_the_domain_goes_on_after_the_kernel_handles_the_gp(run_guest, notes):
    booted = kernel_run(run_guest, "", READ_LSR + privilege(iopl=1) + """
    mov dx, 0x3f8
    mov al, 'X'
    out dx, al
""", notes=notes)
    assert len(records(booted)) == 1
    assert booted.u32("iopl_rc") == 0
    assert bytes(booted.output) == b"X"


@pytest.mark.parametrize("grant", [
    privilege(iopl=1), privilege(iopl=3), privilege(architectural=True),
    privilege(bitmap_ports=0x400),
], ids=["iopl-1", "iopl-3", "architectural-iopl-0", "bitmap"])
def test_the_kernel_with_io_privilege_reads_the_port(run_guest, grant):
    booted = kernel_run(run_guest, grant, READ_LSR)
    assert records(booted) == []
    assert booted.u32("out") == (MARK & ~0xFF) | LSR_IDLE


@pytest.mark.parametrize("ports, port, insn", [
    (0x400, 0x80, "in al, dx"),  # its bit is set
    (0x3FD, 0x3FD, "in al, dx"),  # beyond nr_ports
    (0x3FF, 0x3FE, "in ax, dx"),  # 0x3FE is allowed, 0x3FF lies beyond nr_ports
    (0x500, 0x3FE, "in eax, dx"),  # 0x3FE-0x401: the bits of 0x400 and 0x401 are set
], ids=["bit-set", "beyond-nr-ports", "straddles-nr-ports", "straddles-bits"])
def test_the_io_bitmap_refuses_a_port_whose_bit_is_set_or_beyond_nr_ports(
        run_guest, ports, port, insn):
    text = READ_LSR.replace(f"mov dx, {LSR:#x}", f"mov dx, {port:#x}").replace(
        "in al, dx", insn)
    booted = kernel_run(run_guest, privilege(bitmap_ports=ports), text)
    assert booted.u32("bitmap_rc") == 0
    (fault,) = records(booted)
    assert (fault["vector"], fault["error"], fault["eip"]) == (GP, 0, booted.guest["the_insn"])


@pytest.mark.parametrize("grant, allowed", [
    (privilege(iopl=1), False), (privilege(architectural=True), False),
    (privilege(iopl=3), True), (privilege(bitmap_ports=0x400), True),
], ids=["iopl-1", "architectural-iopl-0", "iopl-3", "bitmap"])
def test_user_mode_needs_iopl_3_or_the_bitmap(run_guest, grant, allowed):
    """Ring 3 counts as ring 3 whatever the assist (iopl_ok); the bitmap is the TSS's
    for every ring."""
    booted = user_run(run_guest, grant, f"""
    mov dx, {LSR:#x}
user_insn:
    in al, dx
    mov [user_stack + 8], eax
    int3
""")
    (trap,) = records(booted, 1)
    if allowed:
        assert trap["vector"] == 3
        assert booted.u32("user_stack", 2) & 0xFF == LSR_IDLE
    else:
        assert (trap["vector"], trap["error"], trap["eip"], trap["cs"]) == \
            (GP, 0, booted.guest["user_insn"], FLAT_RING3_CS)


# -- physdev_op set_iobitmap's checks ---------------------------------------------------
SCRATCH = "buf: .skip 16"


@pytest.mark.parametrize("bitmap, ports, expected", [
    (0x1000, 0, 0), (0x1000, 0x10000, 0),
    (0x1000, 0x10001, neg(EINVAL)),  # more ports than x86 has
    (-0x1000, 8, neg(EINVAL)),  # its 8 KiB run into Xen's range (from its start)
    (-0x2000, 8, 0),  # its 8 KiB end where Xen's range begins
    (0x40000000, 8, 0),  # unmapped is fine: read at each access, as all ones
], ids=["none", "all", "too-many", "hypervisor-range", "below-it", "unmapped"])
def test_set_iobitmap_checks_the_range_and_the_port_count(idle, bitmap, ports, expected):
    buf = idle.guest["buf"]
    if bitmap < 0:
        bitmap += idle.domain.hypervisor_start
    idle.write_u32s(buf, bitmap, ports)
    assert hypercall(idle, HC.physdev_op, PHYSDEVOP_SET_IOBITMAP, buf) == expected
    if expected == 0:
        assert (idle.domain.iobitmap, idle.domain.iobitmap_ports) == (bitmap, ports)


def test_set_iobitmap_with_an_argument_it_cannot_read_is_efault(idle):
    assert hypercall(idle, HC.physdev_op, PHYSDEVOP_SET_IOBITMAP, 0x40000000) == neg(EFAULT)
