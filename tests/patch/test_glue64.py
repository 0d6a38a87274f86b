"""The xen64 glue, run: a patched 64-bit kernel's glue functions executed on Unicorn
(tests/patch/glue64.py) with Xen's hypercalls recorded, against what XEN-ABI64.md says
each rewrite must do.

Numbers typed from their sources: hypercall numbers and structure layouts from Xen's
public headers as XEN-ABI64.md quotes them (1.2-1.7), MSR numbers from the SDM, the
offsets in .pvdata from docs/ABI.md ("64-bit kernels: the added sections").
"""

import re
import struct

import pytest
import unicorn as uc

from tests.patch.glue64 import KERNBASE, RETURN, STACK_TOP, GlueMachine
from tests.patch.kernel64 import build_kernel64, patch_kernel64
from tests.patch.tools import sections

# public/xen.h hypercall numbers.
HC_SET_TRAP_TABLE, HC_MMU_UPDATE, HC_SET_GDT, HC_STACK_SWITCH = 0, 1, 2, 3
HC_UPDATE_VA_MAPPING, HC_XEN_VERSION, HC_CONSOLE_IO, HC_IRET = 14, 17, 18, 23
HC_SET_SEGMENT_BASE, HC_MMUEXT_OP, HC_SCHED_OP, HC_CALLBACK_OP, HC_PHYSDEV_OP = \
    25, 26, 29, 30, 33
MMUEXT_NEW_BASEPTR, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_NEW_USER_BASEPTR = 5, 6, 15
UVMF_INVLPG = 2
DOMID_SELF = 0x7FF0
# MSRs (SDM Vol. 4) and what Xen numbers them as (XEN-ABI64.md 1.5, 1.7).
FS_BASE, GS_BASE, KERNEL_GS_BASE = 0xC000_0100, 0xC000_0101, 0xC000_0102
STAR, LSTAR, CSTAR, SFMASK, SYSENTER_EIP = 0xC000_0081, 0xC000_0082, 0xC000_0083, \
    0xC000_0084, 0x176
SEGBASE_FS, SEGBASE_GS_USER, SEGBASE_GS_KERNEL = 0, 1, 2
CALLBACK_SYSCALL, CALLBACK_SYSENTER, CALLBACK_SYSCALL32 = 2, 5, 7
VGCF_IN_SYSCALL = 0x100
FLAT_CS, FLAT_SS = 0xE033, 0xE02B
# .pvdata (docs/ABI.md): the register block, the argument blocks, the shared_info page.
REGS_CR3, REGS_FS_BASE, REGS_GS_BASE, REGS_STAR, REGS_LSTAR = 8, 80, 88, 104, 120
REGS_CSTAR, REGS_SYSENTER_ESP, REGS_SYSENTER_EIP = 128, 144, 152
REGS_CS = 68  # then regs_ss: the selectors the kernel loaded itself
REGS_IRET_ENTRY = 160  # the glue's pv_iret
MBI, MMU_UPDATE, CALLBACK = 0xA8, 0x138, 0x148
MFN_LIST_PTR, USER_L4_POOL, USER_L4_TABLES = 0x190, 0x15000, 16
# pv_write_cr3's record of each kernel L4 met: 64 bytes, its mmuext_op pair at 16
USER_L4_RECORDS, USER_L4_RECORD, USER_L4_OPS = 0x340, 64, 16
USER_L4_STALE = 0x1E0  # the record whose user L4 is stale, 0 when none is
TRAP_INFO, CMDLINE, SHARED_INFO_PAGE = 0x1000, 0x2100, 0x3000
GDT_FRAMES, GDT_SHADOW = 0x240, 0x7000
USER_VIEW_POOL = 0x25000  # the user-mode view of the kernel's upper half: 32 tables
IDENTITY_L3, IDENTITY_L2, IDENTITY_L1S, IDENTITY_END = 0x45000, 0x46000, 0x47000, 0x87000
IF = 1 << 9
POINTER = STACK_TOP - 0x2000  # lgdt's and lidt's pseudo-descriptor, off the stack


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    kernel = build_kernel64(tmp_path_factory)
    out, _ = patch_kernel64(kernel, tmp_path_factory)
    return kernel, out


@pytest.fixture
def machine(image):
    return GlueMachine(image[1])


def pvdata(machine) -> int:
    return sections(machine.image)[".pvdata"].address


def numbers(machine) -> list[int]:
    return [call.number for call in machine.calls]


def test_pushfq_shows_the_virtual_interrupt_flag(machine):
    mask = pvdata(machine) + SHARED_INFO_PAGE + 1
    for masked, expected_if in ((1, 0), (0, IF)):
        machine.write(mask, bytes([masked]))
        machine.write(STACK_TOP - 8, struct.pack("<Q", 0x246))  # pushfq's value: IF set
        machine.call("pv_pushf_fixup", stack=STACK_TOP - 8)
        assert machine.u64(STACK_TOP - 8) == (0x246 & ~IF) | expected_if
    assert machine.calls == []


def test_popfq_sets_the_mask_and_delivers_a_pending_event(machine):
    info = pvdata(machine) + SHARED_INFO_PAGE
    machine.write(info, bytes([1, 0]))  # an event pending, events unmasked
    machine.write(STACK_TOP - 8, struct.pack("<Q", 0x2))  # popfq's value: IF clear
    machine.call("pv_popf_mask", stack=STACK_TOP - 8)
    assert machine.read(info + 1, 1) == b"\x01" and machine.calls == []
    machine.write(STACK_TOP - 8, struct.pack("<Q", 0x202))  # IF set: unmask, deliver
    machine.call("pv_popf_mask", stack=STACK_TOP - 8)
    assert machine.read(info + 1, 1) == b"\x00"
    assert numbers(machine) == [HC_XEN_VERSION]


def test_the_cli_detour_masks_events_and_runs_the_displaced_instruction(image, machine):
    kernel, _ = image
    machine.write(pvdata(machine) + SHARED_INFO_PAGE + 1, b"\x00")
    machine.run(kernel["start64"], STACK_TOP - 64, until=kernel["site_mov_from_cr3"])
    assert machine.read(pvdata(machine) + SHARED_INFO_PAGE + 1, 1) == b"\x01"
    assert machine.reg("rsp") == kernel["stack_top"]  # `mov rsp, offset stack_top`, moved
    assert machine.calls == []


def iret_frame(machine) -> list[int]:
    rsp = machine.calls[-1].rsp
    return list(struct.unpack("<9Q", machine.read(rsp, 72)))


def test_iretq_to_the_kernel_is_hypervisor_iret_with_xens_selectors(machine):
    machine.stop_at = {HC_IRET}
    frame = [0xFFFF_FFFF_8010_1234, 0x08, 0x246, STACK_TOP - 0x100, 0x10]
    rsp = STACK_TOP - 0x200
    machine.write(rsp, struct.pack("<5Q", *frame))
    machine.run(machine.functions["pv_iret"], rsp, rax=7, rcx=8, r11=9)
    assert numbers(machine) == [HC_IRET]
    # struct iret_context: rax, r11, rcx (the hypercall page's), flags, then the frame
    # CS with RPL 0: RPL 3 would tell Xen to switch to user mode (XEN-ABI64.md)
    assert iret_frame(machine) == [7, 9, 8, 0, frame[0], FLAT_CS & ~3, 0x246, frame[3],
                                   FLAT_SS]


def test_iretq_to_user_keeps_the_users_selectors(machine):
    machine.stop_at = {HC_IRET}
    frame = [0x40_1000, 0x2B, 0x202, 0x7FFF_F000, 0x23]
    rsp = STACK_TOP - 0x200
    machine.write(rsp, struct.pack("<5Q", *frame))
    machine.run(machine.functions["pv_iret"], rsp)
    assert iret_frame(machine)[3:] == [0, *frame]


def test_sysretq_is_hypervisor_iret_in_syscall_off_the_users_stack(machine):
    machine.stop_at = {HC_IRET}
    user_rsp = STACK_TOP - 0x1000
    below = bytes(range(128))  # the user's red zone
    machine.write(user_rsp - 128, below)
    machine.run(machine.functions["pv_sysret"], user_rsp, rcx=0x40_2000, r11=0x202)
    assert iret_frame(machine)[3:] == [VGCF_IN_SYSCALL, 0x40_2000, FLAT_CS, 0x202, user_rsp,
                                       FLAT_SS]
    assert machine.read(user_rsp - 128, 128) == below


@pytest.mark.parametrize(("msr", "which"), [(FS_BASE, SEGBASE_FS),
                                            (GS_BASE, SEGBASE_GS_KERNEL),
                                            (KERNEL_GS_BASE, SEGBASE_GS_USER)])
def test_wrmsr_of_a_segment_base_is_set_segment_base(machine, msr, which):
    value = 0xFFFF_8880_1234_5000
    machine.call("pv_wrmsr", rcx=msr, rax=value & 0xFFFF_FFFF, rdx=value >> 32)
    assert [(c.number, c.args[:2]) for c in machine.calls] == [(HC_SET_SEGMENT_BASE,
                                                                (which, value))]
    machine.call("pv_rdmsr", rcx=msr, rax=0, rdx=0)
    assert (machine.reg("rdx") << 32 | machine.reg("rax")) == value


@pytest.mark.parametrize(("msr", "kind", "glue", "kept"), [
    (LSTAR, CALLBACK_SYSCALL, "pv_syscall_entry", REGS_LSTAR),
    (CSTAR, CALLBACK_SYSCALL32, "pv_syscall32_entry", REGS_CSTAR),
    (SYSENTER_EIP, CALLBACK_SYSENTER, "pv_sysenter_entry", REGS_SYSENTER_EIP)])
def test_wrmsr_of_a_system_call_entry_registers_the_callback(machine, msr, kind, glue, kept):
    entry = KERNBASE + 0x10_5000
    machine.watch = {"callback": (pvdata(machine) + CALLBACK, 16)}
    machine.call("pv_wrmsr", rcx=msr, rax=entry & 0xFFFF_FFFF, rdx=entry >> 32)
    [call] = machine.calls
    assert (call.number, call.args[0], call.args[1]) == (HC_CALLBACK_OP, 0,
                                                          pvdata(machine) + CALLBACK)
    # callback_register: type u16, flags u16 (CALLBACKF_mask_events), address u64 at 8:
    # the glue's entry, which continues in the kernel's, recorded
    assert struct.unpack("<HHxxxxQ", call.memory["callback"]) == (
        kind, 1, machine.functions[glue])
    assert machine.u64(pvdata(machine) + kept) == entry
    machine.call("pv_rdmsr", rcx=msr, rax=0, rdx=0)
    assert (machine.reg("rdx") << 32 | machine.reg("rax")) == entry


def test_the_syscall_entry_gives_the_kernel_the_bare_machines_state(machine):
    """Xen's syscall bounce frame (XEN-ABI64.md 1.4): RCX, R11, then RIP, CS, RFLAGS,
    RSP, SS; the kernel's LSTAR entry gets RCX = RIP, R11 = RFLAGS, the user's RSP."""
    kernel_entry, user_rip, user_rsp = KERNBASE + 0x10_5000, 0x40_1234, 0x7FFF_E000
    machine.write(pvdata(machine) + REGS_LSTAR, struct.pack("<Q", kernel_entry))
    frame = STACK_TOP - 0x100
    machine.write(frame, struct.pack("<7Q", user_rip, 0x246, user_rip, FLAT_CS | 3, 0x246,
                                     user_rsp, FLAT_SS))
    machine.run(machine.functions["pv_syscall_entry"], frame, until=kernel_entry)
    assert (machine.reg("rcx"), machine.reg("r11"), machine.reg("rsp")) == (
        user_rip, 0x246, user_rsp)


def test_a_trap_entry_leaves_the_hardware_frame_for_the_kernels_handler(machine):
    """After lidt, Xen's frame for vector 14 (RCX, R11, error code, RIP, CS, RFLAGS,
    RSP, SS: XEN-ABI64.md 1.5) reaches the gate's handler as the hardware's would:
    RSP at the error code, RCX and R11 the interrupted ones."""
    idt, handler = STACK_TOP - 0x3000, KERNBASE + 0x10_4321
    for vector in range(256):
        machine.write(idt + 16 * vector, gate(handler + vector, 0xE, 0))
    machine.write(POINTER, struct.pack("<HQ", 16 * 256 - 1, idt))
    machine.watch = {"table": (pvdata(machine) + TRAP_INFO, 16 * 256)}
    machine.call("pv_lidt", rax=POINTER)
    table = machine.calls[-1].memory["table"]
    for vector in (0, 14, 255):
        entry = struct.unpack_from("<BBHxxxxQ", table, 16 * vector)[3]
        frame = STACK_TOP - 0x200
        machine.write(frame, struct.pack("<8Q", 0x1111, 0x2222, 2, KERNBASE + 0x10_0000,
                                         FLAT_CS, 0x2, STACK_TOP - 0x80, FLAT_SS))
        machine.run(entry, frame, until=handler + vector, rcx=0, r11=0)
        assert (machine.reg("rcx"), machine.reg("r11"), machine.reg("rsp")) == (
            0x1111, 0x2222, frame + 16)


def test_wrmsr_of_star_and_sfmask_is_recorded_without_a_hypercall(machine):
    machine.call("pv_wrmsr", rcx=STAR, rax=0, rdx=0x0023_0008)
    machine.call("pv_wrmsr", rcx=SFMASK, rax=0x4700, rdx=0)
    assert machine.calls == []
    assert machine.u64(pvdata(machine) + REGS_STAR) == 0x0023_0008 << 32
    machine.call("pv_rdmsr", rcx=STAR, rax=0, rdx=0)
    assert (machine.reg("rdx"), machine.reg("rax")) == (0x0023_0008, 0)


def to_user(machine, how: str = "pv_iret") -> None:
    """Return to user mode the way HOW does (iretq to RPL 3, sysretq, sysexitq), up to
    its HYPERVISOR_iret (or the console_io of the glue's last words)."""
    machine.stop_at = {HC_IRET, HC_CONSOLE_IO}
    rsp = STACK_TOP - 0x200
    machine.write(rsp, struct.pack("<5Q", 0x40_1000, 0x2B, 0x202, 0x7FFF_F000, 0x23))
    machine.run(machine.functions[how], rsp, rcx=0x40_2000, rdx=0x40_3000, r11=0x202)
    machine.stop_at = set()


def test_a_cr3_write_loads_the_kernel_l4_and_its_user_l4(machine):
    base = pvdata(machine)
    l4 = 0x50_0000
    entries = {0: 0x50_1067, 255: 0x50_2067, 511: 0x50_3067}
    for slot, value in entries.items():
        machine.write(KERNBASE + l4 + 8 * slot, struct.pack("<Q", value))
    machine.write(KERNBASE + 0x50_3000 + 8 * 510, struct.pack("<Q", 0x50_4067))  # KERNBASE
    identity_p2m(machine)
    watch_records(machine)
    machine.call("pv_write_cr3", rax=l4)
    # one hypercall: the user L4 is brought in step on the way to user mode
    assert numbers(machine) == [HC_MMUEXT_OP]
    pool = (base - KERNBASE + USER_L4_POOL) >> 12  # the first user L4 (P2M is identity)
    mmuext = machine.calls[0]
    assert mmuext.args[:4] == (base + USER_L4_RECORDS + USER_L4_OPS, 2, 0, DOMID_SELF)
    assert loaded(machine, mmuext) == (l4 >> 12, pool)
    assert machine.u64(base + REGS_CR3) == l4
    # the kernel's L2 of its link range now maps the glue's 2 MiB (KERNBASE + 16 MiB,
    # L2 entry 8) with the PV entry's L1 for it, the ninth of the identity map
    phys = base - KERNBASE
    assert phys == 16 << 20
    assert machine.u64(KERNBASE + 0x50_4000 + 8 * 8) == (phys + IDENTITY_L1S + 8 * 4096) | 0x67
    assert machine.u64(KERNBASE + 0x50_4000 + 8 * 7) == 0  # nothing else written
    machine.calls.clear()
    to_user(machine)
    assert numbers(machine) == [HC_MMU_UPDATE, HC_MMU_UPDATE, HC_IRET]
    updates = [struct.unpack("<QQ", c.memory["update"]) for c in machine.calls[:2]]
    assert updates == [((pool << 12) + 0, entries[0]), ((pool << 12) + 8 * 255, entries[255])]


def watch_records(machine) -> None:
    """Record, at each hypercall, the user L4 records (where pv_write_cr3's mmuext_op
    pairs are) and the mmu_update argument."""
    base = pvdata(machine)
    machine.watch = {"update": (base + MMU_UPDATE, 16),
                     "records": (base + USER_L4_RECORDS, USER_L4_TABLES * USER_L4_RECORD)}


def loaded(machine, call) -> tuple[int, int]:
    """The kernel and user L4 frames CALL, an mmuext_op of two commands, loads
    (watch_records must have been set)."""
    assert call.number == HC_MMUEXT_OP and call.args[1] == 2
    at = call.args[0] - pvdata(machine) - USER_L4_RECORDS
    ops = [struct.unpack_from("<IxxxxQ", call.memory["records"], at + 24 * n) for n in range(2)]
    assert [cmd for cmd, _ in ops] == [MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR]
    return ops[0][1], ops[1][1]


def load_l4(machine, l4: int, slots: dict[int, int]) -> None:
    """A kernel L4 at physical L4 holding SLOTS and the link range down to the L2 the
    glue's 2 MiB goes in."""
    for slot, value in slots.items():
        machine.write(KERNBASE + l4 + 8 * slot, struct.pack("<Q", value))
    machine.write(KERNBASE + l4 + 8 * 511, struct.pack("<Q", 0x50_3067))
    machine.write(KERNBASE + 0x50_3000 + 8 * 510, struct.pack("<Q", 0x50_4067))


def two_kernel_l4s(machine, second_slot: int) -> tuple[int, int, int]:
    """Two kernel L4s sharing the link range's tables (load_l4), the first with a
    user slot 0, the second with SECOND_SLOT, and the records watched: .pvdata's
    address and the two L4s'."""
    first, second = 0x50_0000, 0x51_0000
    load_l4(machine, first, {0: 0x50_1067})
    load_l4(machine, second, {second_slot: 0x51_1067})
    identity_p2m(machine)
    watch_records(machine)
    return pvdata(machine), first, second


def switched_to_user(machine, how: str = "pv_iret") -> tuple[int, int]:
    """A CR3 write of a kernel L4 mapping one user slot, then a return to user mode
    the way HOW does: .pvdata's address and the L4's."""
    base, l4 = pvdata(machine), 0x50_0000
    load_l4(machine, l4, {0: 0x50_1067})
    identity_p2m(machine)
    machine.watch = {"update": (base + MMU_UPDATE, 16)}
    machine.call("pv_write_cr3", rax=l4)
    to_user(machine, how)
    return base, l4


KEPT = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15")


def test_a_cr3_write_keeps_every_register_and_may_change_the_arithmetic_flags(machine):
    """A mov to CR3 changes no general register and leaves OF, SF, ZF, AF, PF and CF
    undefined (SDM Vol. 2B, MOV to/from control registers; docs/ABI.md "What a glue
    call keeps"): pv_write_cr3 keeps the registers, and DF and IF, without the
    pushfq/popfq pair whose popfq ends the emulator's translation block."""
    l4 = 0x50_0000
    load_l4(machine, l4, {0: 0x50_1067})
    identity_p2m(machine)
    values = {name: 0x1111_0000_0000 * (n + 1) + n for n, name in enumerate(KEPT)}
    values["rax"] = l4
    flags = IF | 0x2 | 0x8D5  # IF, the reserved bit, OF SF ZF AF PF CF set
    machine.call("pv_write_cr3", rflags=flags, **values)
    assert numbers(machine) == [HC_MMUEXT_OP]
    assert {name: machine.reg(name) for name in KEPT} == values
    assert machine.reg("rflags") & ~0x8D5 == flags & ~0x8D5
    assert machine.reg("rsp") == STACK_TOP


def made_updates(machine) -> list[tuple[int, int]]:
    return [struct.unpack("<QQ", c.memory["update"]) for c in machine.calls
            if c.number == HC_MMU_UPDATE]


def test_the_user_l4_follows_the_kernel_l4_as_it_is_when_user_mode_is_entered(machine):
    """An entry the kernel writes after the CR3 write, before it returns to user mode,
    is in the user L4 user mode runs on (Xen made the first sync's writes, so only
    the new entry is written)."""
    base, l4 = switched_to_user(machine)
    user_l4 = base - KERNBASE + USER_L4_POOL
    for ptr, value in made_updates(machine):
        machine.write(KERNBASE + ptr, struct.pack("<Q", value))
    machine.calls.clear()
    machine.call("pv_write_cr3", rax=l4)
    machine.write(KERNBASE + l4 + 8 * 3, struct.pack("<Q", 0x50_6067))  # after the write
    to_user(machine)
    assert numbers(machine) == [HC_MMUEXT_OP, HC_MMU_UPDATE, HC_IRET]
    assert made_updates(machine) == [(user_l4 + 8 * 3, 0x50_6067)]


@pytest.mark.parametrize("how", ["pv_iret", "pv_sysret", "pv_sysexit"])
def test_a_return_to_user_compares_nothing_when_no_cr3_write_came_since_the_last(machine, how):
    _, l4 = switched_to_user(machine, how)
    assert numbers(machine) == [HC_MMUEXT_OP, HC_MMU_UPDATE, HC_IRET]
    machine.calls.clear()
    machine.write(KERNBASE + l4 + 8 * 3, struct.pack("<Q", 0x50_6067))
    to_user(machine, how)  # as on hardware, a TLB still holds the old L4's entries
    assert numbers(machine) == [HC_IRET]


def test_switches_that_never_reach_user_mode_bring_only_the_last_l4_in_step(machine):
    """Two kernel L4s loaded in turn, a thousand times, then user mode: one user L4 per
    kernel L4, and only the last one's written, once, by the return to user mode."""
    base, first, second = two_kernel_l4s(machine, second_slot=1)
    for _ in range(1000):
        machine.call("pv_write_cr3", rax=first)
        machine.call("pv_write_cr3", rax=second)
    assert numbers(machine) == [HC_MMUEXT_OP] * 2000
    pool = (base - KERNBASE + USER_L4_POOL) >> 12
    assert [loaded(machine, c) for c in machine.calls] == [(first >> 12, pool),
                                                          (second >> 12, pool + 1)] * 1000
    machine.calls.clear()
    to_user(machine)
    assert numbers(machine) == [HC_MMU_UPDATE, HC_IRET]
    assert made_updates(machine) == [(((pool + 1) << 12) + 8, 0x51_1067)]


def test_kernel_l4s_beyond_the_two_last_loaded_each_keep_their_own_user_l4(machine):
    """Five kernel L4s, more than the two pv_write_cr3 compares first, loaded in an
    order that leaves none of them recent for long: each load names the L4's own frame
    and the user L4 it got when first met, and the return to user mode brings that
    user L4 in step (its slot 0, which differs per L4)."""
    base = pvdata(machine)
    l4s = [0x50_0000 + n * 0x1_0000 for n in range(5)]
    for n, l4 in enumerate(l4s):
        load_l4(machine, l4, {0: 0x60_0067 + n * 0x1000})
    identity_p2m(machine)
    watch_records(machine)
    pool = (base - KERNBASE + USER_L4_POOL) >> 12
    order = [0, 1, 2, 3, 4, 0, 2, 4, 1, 3, 3, 0, 0, 4, 2, 1, 4, 0]
    for n in order:
        machine.calls.clear()
        machine.call("pv_write_cr3", rax=l4s[n])
        assert loaded(machine, machine.calls[0]) == (l4s[n] >> 12, pool + n)
        to_user(machine)
        assert made_updates(machine) == [((pool + n) << 12, 0x60_0067 + n * 0x1000)]


def rebuild(machine, l4: int, level: str) -> int:
    """The kernel rebuilds what L4 maps of its link range at LEVEL (the L4's entry now
    links a new L3, the L3's a new L2, or the L2's entry for the glue's range is
    cleared; "gone": the L4 no longer maps the link range): the L2 the glue's entry
    belongs in after that."""
    if level == "gone":
        machine.write(KERNBASE + l4 + 8 * 511, bytes(8))
        return 0x50_4000
    if level == "l4":
        machine.write(KERNBASE + l4 + 8 * 511, struct.pack("<Q", 0x52_3067))
        machine.write(KERNBASE + 0x52_3000 + 8 * 510, struct.pack("<Q", 0x52_4067))
        return 0x52_4000
    if level == "l3":
        machine.write(KERNBASE + 0x50_3000 + 8 * 510, struct.pack("<Q", 0x52_4067))
        return 0x52_4000
    machine.write(KERNBASE + 0x50_4000 + 8 * 8, bytes(8))
    return 0x50_4000


@pytest.mark.parametrize("level", ["l4", "l3", "l2", "gone"])
def test_an_l4_loaded_before_and_rebuilt_gets_the_glues_range_again(machine, level):
    """pv_write_cr3 remembers the entries down to the glue's 2 MiB and compares the
    next L4's with them rather than walk it: a kernel that rebuilt an L4 at a frame
    it loaded before (one of the two it compares first) still finds the glue's L1 in
    the L2 the L4 now leads to, or, without the link range, the domain crashes."""
    base, first, second = two_kernel_l4s(machine, second_slot=0)
    glue_l1 = (base - KERNBASE + IDENTITY_L1S + 8 * 4096) | 0x67
    machine.call("pv_write_cr3", rax=first)
    machine.call("pv_write_cr3", rax=second)
    assert machine.u64(KERNBASE + 0x50_4000 + 8 * 8) == glue_l1
    l2 = rebuild(machine, first, level)
    machine.calls.clear()
    machine.stop_at = {HC_CONSOLE_IO}
    machine.call("pv_write_cr3", rax=first)
    if level == "gone":
        assert numbers(machine) == [HC_CONSOLE_IO]
        _, size, text = machine.calls[-1].args[:3]
        assert machine.read(text, size).startswith(b"glue: mov to CR3: the new L4 does not")
        assert HC_MMUEXT_OP not in numbers(machine)
        return
    pool = (base - KERNBASE + USER_L4_POOL) >> 12
    assert loaded(machine, machine.calls[0]) == (first >> 12, pool)
    assert machine.u64(KERNBASE + l2 + 8 * 8) == glue_l1


def test_a_cr3_write_makes_records_and_links_with_events_masked(machine):
    """The first load of an L4 makes its record and links the glue's range with
    events masked (an upcall's handler could write CR3 halfway), then the kernel's
    mask is back, whichever it was; a later load of either L4, the fast path, writes
    no mask at all."""
    mask = pvdata(machine) + SHARED_INFO_PAGE + 1
    written = []  # the hook is given physical addresses (the harness maps KERNBASE at 0)
    machine.cpu.hook_add(uc.UC_HOOK_MEM_WRITE,
                         lambda _cpu, _access, _address, _size, value, _data:
                         written.append(value), begin=mask - KERNBASE, end=mask - KERNBASE)
    l4 = 0x50_0000
    load_l4(machine, l4, {0: 0x50_1067})
    identity_p2m(machine)
    load_l4(machine, l4 + 0x1000, {})
    for kernels_mask in (0, 1):
        machine.write(mask, bytes([kernels_mask]))
        written.clear()
        machine.call("pv_write_cr3", rax=l4 + 0x1000 * kernels_mask)
        assert written == [1, kernels_mask]
        assert machine.read(mask, 1) == bytes([kernels_mask])
    written.clear()
    machine.call("pv_write_cr3", rax=l4)
    machine.call("pv_write_cr3", rax=l4 + 0x1000)
    assert written == []


def test_a_switch_to_a_known_l4_touches_one_page_of_pvdata(machine):
    """A switch between two L4s already met reads only .pvdata's first page (each page
    touched after the previous switch's TLB flush is brought back into the emulator's
    TLB: docs/ABI.md) and writes two words there, regs_cr3 and the stale record's
    address, besides the stack."""
    base = pvdata(machine)
    first, second = 0x50_0000, 0x51_0000
    load_l4(machine, first, {0: 0x50_1067})
    load_l4(machine, second, {0: 0x51_1067})
    identity_p2m(machine)
    machine.call("pv_write_cr3", rax=first)
    machine.call("pv_write_cr3", rax=second)
    pages, written = set(), set()
    start, end = base - KERNBASE, base - KERNBASE + IDENTITY_END  # physical, as hooks see it

    def access(_cpu, kind, address, _size, _value, _data):
        if start <= address < end:
            pages.add((address - start) >> 12)
            if kind == uc.UC_MEM_WRITE:
                written.add(address - start)
    machine.cpu.hook_add(uc.UC_HOOK_MEM_READ | uc.UC_HOOK_MEM_WRITE, access)
    machine.call("pv_write_cr3", rax=first)
    assert numbers(machine)[-1] == HC_MMUEXT_OP
    assert pages == {0}
    assert written == {REGS_CR3, USER_L4_STALE}


def after_the_l4_entrys_compare(machine) -> int:
    """The address in pv_write_cr3 right after it compared the new L4's link-range
    entry with the one remembered (the first `jne` after a `cmp rdx`), from the
    listing diff."""
    lines = re.findall(r"^\+([0-9a-f]+) <pv_write_cr3(?:\+0x[0-9a-f]+)?>: (.*)$",
                       machine.image.with_suffix(".diff").read_text(), re.MULTILINE)
    at = next(n for n in range(1, len(lines))
              if lines[n][1].startswith("jne") and lines[n - 1][1].startswith("cmp rdx"))
    return int(lines[at + 1][0], 16)


def test_a_relink_during_a_cr3_writes_compares_makes_it_link_its_own_l4(machine):
    """An upcall's handler that loads another L4, relinking the glue's range for it,
    while a CR3 write compares its L4's entries with those remembered (right after the
    L4 entry's compare) leaves the compares reading two links' entries: the write sees
    the new glue_generation and links its own L4, whose L3 the kernel had pointed at a
    new L2 (without the check, that L2 would lack the glue's entry)."""
    base = pvdata(machine)
    first, second = 0x50_0000, 0x51_0000
    load_l4(machine, first, {0: 0x50_1067})  # L3 0x50_3000, L2 0x50_4000
    machine.write(KERNBASE + second + 8 * 511, struct.pack("<Q", 0x52_3067))
    machine.write(KERNBASE + 0x52_3000 + 8 * 510, struct.pack("<Q", 0x52_4067))
    identity_p2m(machine)
    for l4 in (first, second, first):
        machine.call("pv_write_cr3", rax=l4)
    machine.write(KERNBASE + 0x50_3000 + 8 * 510, struct.pack("<Q", 0x53_4067))
    machine.write(STACK_TOP - 8, struct.pack("<Q", RETURN))
    machine.run(machine.functions["pv_write_cr3"], STACK_TOP - 8,
                until=after_the_l4_entrys_compare(machine), rax=first)
    interrupted = machine.cpu.context_save()
    machine.call("pv_write_cr3", stack=STACK_TOP - 0x400, rax=second)  # the upcall's
    machine.cpu.context_restore(interrupted)
    machine.calls.clear()
    machine.run(machine.reg("rip"), machine.reg("rsp"))
    watch_records(machine)
    assert numbers(machine) == [HC_MMUEXT_OP]
    glue_l1 = (base - KERNBASE + IDENTITY_L1S + 8 * 4096) | 0x67
    assert machine.u64(KERNBASE + 0x53_4000 + 8 * 8) == glue_l1
    assert machine.u64(base + REGS_CR3) == first


def test_the_user_l4_is_brought_in_step_with_events_masked(machine):
    """An upcall while the user L4 is written could switch CR3 under it: events are
    masked meanwhile, then the mask is the kernel's again; the flags are kept."""
    base = pvdata(machine)
    mask = base + SHARED_INFO_PAGE + 1
    l4 = 0x50_0000
    load_l4(machine, l4, {0: 0x50_1067})
    identity_p2m(machine)
    machine.watch = {"mask": (mask, 1)}
    machine.call("pv_write_cr3", rax=l4)
    machine.write(mask, b"\x00")
    machine.calls.clear()
    machine.call("pv_user_l4_sync", rax=0x1234, rcx=7)
    assert [(c.number, c.memory["mask"]) for c in machine.calls] == [(HC_MMU_UPDATE, b"\x01")]
    assert machine.read(mask, 1) == b"\x00"
    assert (machine.reg("rax"), machine.reg("rcx")) == (0x1234, 7)


def test_the_pool_of_user_l4s_full_crashes_the_domain_with_the_reason(machine):
    base = pvdata(machine)
    identity_p2m(machine)
    for n in range(USER_L4_TABLES):
        load_l4(machine, 0x60_0000 + n * 0x1000, {})
        machine.call("pv_write_cr3", rax=0x60_0000 + n * 0x1000)
    assert numbers(machine) == [HC_MMUEXT_OP] * USER_L4_TABLES
    load_l4(machine, 0x70_0000, {})
    machine.calls.clear()
    machine.stop_at = {HC_CONSOLE_IO}
    machine.call("pv_write_cr3", rax=0x70_0000)
    assert numbers(machine) == [HC_CONSOLE_IO]  # the switch never happens
    _, size, text = machine.calls[-1].args[:3]
    assert machine.read(text, size).startswith(b"glue: mov to CR3: more than 16 distinct")
    assert machine.u64(base + REGS_CR3) == 0x60_0000 + (USER_L4_TABLES - 1) * 0x1000


def test_user_mode_sees_only_the_pages_the_kernel_mapped_for_it_in_its_upper_half(machine):
    """The kernel's link range (slot 511) holds a user page (U, which Xen leaves without
    _PAGE_GUEST_KERNEL), a kernel page as Xen validated it (U and _PAGE_GUEST_KERNEL,
    bit 52) and one the kernel has not had validated (no U): the user L4's slot 511
    leads through views of the L3, the L2 and the L1 (the glue's tables, from the pool,
    the L1's first) to the user page alone (XEN-ABI64.md 1.1, 1.8)."""
    base = pvdata(machine)
    l4, l3, l2, l1 = 0x50_0000, 0x50_3000, 0x50_4000, 0x50_5000
    machine.write(KERNBASE + l4 + 8 * 511, struct.pack("<Q", l3 | 0x67))
    machine.write(KERNBASE + l3 + 8 * 510, struct.pack("<Q", l2 | 0x67))
    machine.write(KERNBASE + l2 + 8 * 1, struct.pack("<Q", l1 | 0x67))
    user_page, kernel_page, raw_kernel_page = 0x12_3125, 0x12_4067 | 1 << 52, 0x12_5063
    machine.write(KERNBASE + l1 + 8 * 3, struct.pack("<3Q", user_page, kernel_page,
                                                     raw_kernel_page))
    identity_p2m(machine)
    machine.watch = {"update": (base + MMU_UPDATE, 16)}
    machine.call("pv_write_cr3", rax=l4)
    to_user(machine)
    assert numbers(machine) == [HC_MMUEXT_OP] + [HC_MMU_UPDATE] * 4 + [HC_IRET]
    phys = base - KERNBASE
    view_l1, view_l2, view_l3 = (phys + USER_VIEW_POOL + 4096 * n for n in range(3))
    user_l4 = phys + USER_L4_POOL
    updates = made_updates(machine)
    assert updates == [(view_l1 + 8 * 3, user_page), (view_l2 + 8 * 1, view_l1 | 0x67),
                       (view_l3 + 8 * 510, view_l2 | 0x67), (user_l4 + 8 * 511, view_l3 | 0x67)]
    # Xen made those writes; the next load of the L4 finds the views made, and the
    # user L4 in step: nothing to update (a later user mapping there is not seen)
    for ptr, value in updates:
        machine.write(KERNBASE + ptr, struct.pack("<Q", value))
    machine.write(KERNBASE + l1 + 8 * 6, struct.pack("<Q", 0x12_6125))
    machine.calls.clear()
    machine.call("pv_write_cr3", rax=l4)
    to_user(machine)
    assert numbers(machine) == [HC_MMUEXT_OP, HC_IRET]  # shared_info stays mapped


@pytest.mark.parametrize("refused, says", [
    (HC_MMU_UPDATE, b"glue: mmu_update refused an entry: of the PV entry's identity map"),
    (HC_MMUEXT_OP, b"glue: mmuext_op refused a new L4")])
def test_a_refusal_during_an_address_space_switch_names_the_call_refused(machine, refused,
                                                                         says):
    """mmuext_op refused at the CR3 write, mmu_update on the way to user mode."""
    l4 = 0x50_0000
    machine.write(KERNBASE + l4, struct.pack("<Q", 0x50_1067))  # a user slot to copy
    machine.write(KERNBASE + l4 + 8 * 511, struct.pack("<Q", 0x50_3067))
    machine.write(KERNBASE + 0x50_3000 + 8 * 510, struct.pack("<Q", 0x50_4067))
    identity_p2m(machine)
    machine.refuse, machine.stop_at = {refused}, {HC_CONSOLE_IO}
    machine.call("pv_write_cr3", rax=l4)
    if refused == HC_MMU_UPDATE:
        to_user(machine)
    assert numbers(machine)[-2:] == [refused, HC_CONSOLE_IO]
    _, size, text = machine.calls[-1].args[:3]
    assert machine.read(text, size).startswith(says)


@pytest.mark.parametrize("l2_entry", [None, 0x60_0067])  # no L2; another table at 16 MiB
def test_a_cr3_write_crashes_when_the_l4_cannot_hold_the_glue(machine, l2_entry):
    l4 = 0x50_0000
    machine.write(KERNBASE + l4 + 8 * 511, struct.pack("<Q", 0x50_3067))
    if l2_entry is not None:
        machine.write(KERNBASE + 0x50_3000 + 8 * 510, struct.pack("<Q", 0x50_4067))
        machine.write(KERNBASE + 0x50_4000 + 8 * 8, struct.pack("<Q", l2_entry))
    identity_p2m(machine)
    machine.stop_at = {HC_CONSOLE_IO}
    machine.call("pv_write_cr3", rax=l4)
    assert numbers(machine)[-1] == HC_CONSOLE_IO
    assert HC_MMUEXT_OP not in numbers(machine)  # the switch never happens
    _, size, text = machine.calls[-1].args[:3]
    assert machine.read(text, size).startswith(
        b"glue: mov to CR3: the new L4 does not map the link range down to an L2")
    assert machine.u64(KERNBASE + 0x50_4000 + 8 * 8) == (l2_entry or 0)  # left alone


def test_lidt_turns_64_bit_gates_into_16_byte_trap_info(machine):
    idt = STACK_TOP - 0x3000
    handler = KERNBASE + 0x10_4321
    gates = {0: (0xF, 0), 14: (0xE, 0), 0x80: (0xF, 3)}  # type, DPL
    for vector in range(0x81):
        machine.write(idt + 16 * vector, bytes(16))
    for vector, (kind, dpl) in gates.items():
        machine.write(idt + 16 * vector, gate(handler + vector, kind, dpl))
    machine.write(POINTER, struct.pack("<HQ", 16 * 0x81 - 1, idt))
    machine.watch = {"table": (pvdata(machine) + TRAP_INFO, 16 * 4)}
    machine.call("pv_lidt", rax=POINTER)
    assert [(c.number, c.args[0]) for c in machine.calls] == [
        (HC_SET_TRAP_TABLE, 0), (HC_SET_TRAP_TABLE, pvdata(machine) + TRAP_INFO)]
    table = machine.calls[1].memory["table"]
    entries = [struct.unpack_from("<BBHxxxxQ", table, 16 * n) for n in range(4)]
    # DPL 0 becomes 1 (the kernel may raise it); an interrupt gate masks events (4);
    # the address is the vector's 5-byte entry in pv_trap_entries
    trap_entries = machine.functions["pv_trap_entries"]
    assert entries == [(0, 1, FLAT_CS, trap_entries), (14, 1 | 4, FLAT_CS, trap_entries + 70),
                       (0x80, 3, FLAT_CS, trap_entries + 5 * 0x80), (0, 0, 0, 0)]


def test_lgdt_gives_xen_the_table_without_its_tss(machine):
    gdt = STACK_TOP - 0x3000
    code64, data = 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF
    tss_low, tss_high = 0x0080_8900_1000_0067, 0x0000_0000_FFFF_FFFF
    machine.write(gdt, struct.pack("<5Q", 0, code64, data, tss_low, tss_high))
    machine.write(POINTER, struct.pack("<HQ", 5 * 8 - 1, gdt))
    shadow = pvdata(machine) + GDT_SHADOW
    machine.watch = {"shadow": (shadow, 40)}
    machine.call("pv_lgdt", rax=POINTER)
    [call] = machine.calls
    assert (call.number, call.args[:2]) == (HC_SET_GDT, (pvdata(machine) + GDT_FRAMES, 5))
    assert struct.unpack("<5Q", call.memory["shadow"]) == (0, code64, data, 0, 0)


def test_the_pv_entry_maps_low_ram_and_enters_the_kernel_as_multiboot(image, machine):
    kernel, _ = image
    base = pvdata(machine)
    start_info, l4_pfn, l3_pfn = KERNBASE + 0xE0_0000, 0xE01, 0xE02
    mfn_list = identity_p2m(machine)
    machine.write(KERNBASE + (l4_pfn << 12) + 511 * 8, struct.pack("<Q", l3_pfn << 12 | 0x67))
    info = bytearray(1168)  # start_info, 64-bit (public/xen.h)
    struct.pack_into("<32sQQ", info, 0, b"xen-3.0-x86_64", 0x2000, 0x7_0000_0000)
    struct.pack_into("<QQQ", info, 88, KERNBASE + (l4_pfn << 12), 4, mfn_list)
    info[128:128 + 22] = b"k64.elf console=ttyS0\0"
    machine.write(start_info, bytes(info))
    machine.run(machine.functions["pv_entry"], STACK_TOP, until=kernel["start64"],
                rsi=start_info)
    calls = numbers(machine)
    assert calls == [HC_PHYSDEV_OP, *[HC_UPDATE_VA_MAPPING] * 66, HC_MMU_UPDATE,
                     HC_MMU_UPDATE, HC_MMUEXT_OP, HC_UPDATE_VA_MAPPING]
    phys = base - KERNBASE
    protected = [c.args[:3] for c in machine.calls[1:67]]
    assert protected == [(base + IDENTITY_L3 + 4096 * n,
                          (phys + IDENTITY_L3 + 4096 * n) | 0x21, UVMF_INVLPG)
                         for n in range(66)]
    assert machine.calls[-1].args[:2] == (base + SHARED_INFO_PAGE, 0x7_0000_0000 | 0x63)
    # the kernel's entry state: Multiboot magic, the information structure's address
    assert machine.reg("rdi") == 0x2BAD_B002
    assert machine.reg("rsi") == phys + MBI
    # pv_iret, where an iretq trap site to user mode goes on (hv/trapsites64.py)
    assert machine.u64(base + REGS_IRET_ENTRY) == machine.functions["pv_iret"]
    flags, mem_lower, mem_upper, _, cmdline = struct.unpack("<5I", machine.read(base + MBI, 20))
    # mem_lower as QEMU's Multiboot loader reports it (pvtool's native loader too);
    # mem_upper: the 15 MiB from 1 MiB to .pvdata at 16 MiB, not the domain's 31 MiB
    assert phys == 16 << 20
    assert (mem_lower, mem_upper) == (639, 15 * 1024)
    assert flags & 0x5 == 0x5  # memory and command line
    assert machine.read(KERNBASE + cmdline, 22) == b"k64.elf console=ttyS0\0"
    # the identity map's L1s: pfn p -> mfn p, page tables read-only
    l1 = base + IDENTITY_L1S
    assert machine.u64(l1 + 8 * 0x100) == 0x10_0000 | 0x63
    assert machine.u64(l1 + 8 * l4_pfn) == (l4_pfn << 12) | 0x61
    first_table = (phys + USER_L4_POOL) >> 12
    assert machine.u64(l1 + 8 * first_table) == (first_table << 12) | 0x61
    assert machine.u64(l1 + 8 * ((phys + IDENTITY_END) >> 12)) == \
        ((phys + IDENTITY_END) & ~0xFFF) | 0x63
    assert machine.u64(base + IDENTITY_L2 + 8 * 15) == (phys + IDENTITY_L1S + 15 * 4096) | 0x67
    assert machine.u64(base + IDENTITY_L2 + 8 * 16) == 0  # 32 MiB: sixteen L1s


def identity_p2m(machine) -> int:
    """An identity P2M (pfn = mfn) for the machine's 32 MiB, its address in .pvdata, and
    the M2P to match (at physical 0, which the harness maps where Xen's M2P is)."""
    mfn_list = KERNBASE + 0xC0_0000
    machine.write(mfn_list, struct.pack("<8192Q", *range(8192)))
    machine.write(KERNBASE, struct.pack("<8192Q", *range(8192)))
    machine.write(pvdata(machine) + MFN_LIST_PTR, struct.pack("<Q", mfn_list))
    return mfn_list


def gate(offset: int, kind: int, dpl: int) -> bytes:
    """A 64-bit IDT gate (SDM Vol. 3A, 6.14.1): offset 15:0, selector, IST, type/DPL/P,
    offset 31:16, offset 63:32, reserved."""
    return struct.pack("<HHBBHII", offset & 0xFFFF, 0x08, 0, 0x80 | dpl << 5 | kind,
                       offset >> 16 & 0xFFFF, offset >> 32, 0)


def test_a_read_of_cs_gives_the_selector_the_kernel_loaded(image, machine):
    """`mov ax, cs` reads regs_cs (the glue records the kernel's own selector at its far
    return): Xen's flat CS until then, with RPL 0; only AX is written, as the bare
    machine's 16-bit mov writes it."""
    kernel, _ = image
    regs_cs = pvdata(machine) + REGS_CS
    assert struct.unpack("<2H", machine.read(regs_cs, 4)) == (FLAT_CS & ~3, FLAT_SS & ~3)
    machine.write(regs_cs, struct.pack("<H", 0x08))
    machine.run(kernel["site_mov_from_sreg"], STACK_TOP - 64, until=kernel["site_rdfsbase"],
                rax=0xDEAD_0000_1234_5678)
    assert machine.reg("rax") == 0xDEAD_0000_1234_0008
    assert machine.calls == []
