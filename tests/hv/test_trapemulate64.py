"""Each instruction 64-bit trap-and-emulate emulates (hv/trapemulate64.py), run at CPL 3
on a real trap-mode domain: minikern64 booted by hv/trapmode64.py up to its 64-bit
entry, then the test's code, assembled into low RAM (which the boot tables map at 0),
run until its closing hlt stops the domain (the virtual IF is clear)."""

import struct

import pytest

from pvtool.abi.xen64 import FLAT_KERNEL_CS64
from pvtool.hv.trapemulate64 import (
    CR0_AT_ENTRY64,
)
from pvtool.hv.trapmode64 import boot_trap_domain64
from pvtool.image.elf import load_elf
from pvtool.machine.cpu import CS, GPRS64_BY_NAME, GS_BASE, RIP, RSP, SS
from pvtool.machine.exits import Exit
from pvtool.machine.pc import Machine
from pvtool.machine.stop import StopKind
from pvtool.x86 import msrs
from pvtool.x86.isa import assemble
from pvtool.x86.registers import EFLAGS_IF
from tests.oracles import guest_path

CODE, STACK = 0x600000, 0x610000
GDT, IDT, TSS = 0x620000, 0x621000, 0x622000
HANDLER, USER, KSTACK = 0x623000, 0x624000, 0x630000
KCS, KDS, UDS, UCS, TSSSEL = 0x8, 0x10, 0x1B, 0x23, 0x28  # minikern64's layout
SYSRET_BASE = 0x10  # STAR[63:48]: SS = +8, CS = +16
DESCRIPTORS = {KCS: 0x00AF9A000000FFFF, KDS: 0x00CF92000000FFFF,
               UDS: 0x00CFF2000000FFFF, UCS: 0x00AFFA000000FFFF}
RAX, RBX, RCX, RDX = (GPRS64_BY_NAME[r] for r in ("rax", "rbx", "rcx", "rdx"))
R11 = GPRS64_BY_NAME["r11"]
SYSRETQ = bytes.fromhex("480f07")
ENABLE_SYSCALL = ("mov ecx, 0xc0000080", "rdmsr", "or eax, 1", "wrmsr")  # EFER.SCE


class Domain64:
    """minikern64 at its entry under trap mode, and a way to run code there."""

    def __init__(self):
        self.machine = Machine(output=lambda data: None, bits=64)
        self.trap = boot_trap_domain64(self.machine, load_elf(guest_path("minikern64")))
        self.cpu = self.machine.cpu
        self.vcpu = self.trap.emulator.vcpu
        self.cpu.write(RSP, STACK)

    def write(self, address: int, data: bytes) -> None:
        self.machine.memory.write_phys(address, data)

    def code(self, address: int, *parts: str | bytes) -> bytes:
        out = b""
        for part in parts:
            out += part if isinstance(part, bytes) else assemble(part, address + len(out), 64)
        self.write(address, out)
        return out

    def run(self, *parts: str | bytes) -> None:
        """PARTS (assembly or bytes) then hlt, from CODE; until the domain stops."""
        self.code(CODE, *parts, "hlt")
        self.cpu.write(RIP, CODE)
        self.machine.run_slice(100_000)
        assert self.machine.stop is not None, "the code did not reach its hlt"

    def halted_at(self) -> int:
        stop = self.machine.stop
        assert stop.kind is StopKind.HALTED, stop.reason
        return stop.ip

    def tables(self) -> None:
        """minikern64's GDT (with a 64-bit TSS) and an IDT whose #GP and #PF gates
        lead to HANDLER, an interrupt gate that halts; lgdt and lidt of them."""
        gdt = {sel & ~3: desc for sel, desc in DESCRIPTORS.items()}
        base, limit = TSS, 0x67
        gdt[TSSSEL] = limit | (base & 0xFFFFFF) << 16 | 0x89 << 40 | (base >> 24 & 0xFF) << 56
        gdt[TSSSEL + 8] = base >> 32
        self.write(GDT, b"".join(struct.pack("<Q", gdt.get(sel, 0)) for sel in range(0, 0x38, 8)))
        gate = HANDLER & 0xFFFF | KCS << 16 | 0x8E << 40 | (HANDLER >> 16 & 0xFFFF) << 48
        for vector in (13, 14):
            self.write(IDT + 16 * vector, struct.pack("<QQ", gate, HANDLER >> 32))
        self.write(TSS + 4, struct.pack("<Q", KSTACK))  # RSP0
        self.write(CODE - 0x100, struct.pack("<HQ", 0x37, GDT) + bytes(6)
                   + struct.pack("<HQ", 16 * 256 - 1, IDT))
        self.code(HANDLER, "hlt")

    LOAD_TABLES = (f"mov rax, {CODE - 0x100}", "lgdt [rax]", "add rax, 16", "lidt [rax]",
                   f"mov ax, {TSSSEL}", "ltr ax")


@pytest.fixture
def dom() -> Domain64:
    return Domain64()


def test_the_kernel_starts_at_its_64_bit_entry_at_cpl_3(dom):
    assert dom.cpu.cpl == 3
    assert dom.cpu.read(CS) == FLAT_KERNEL_CS64
    assert dom.cpu.read(GPRS64_BY_NAME["rdi"]) == 0x2BADB002  # Multiboot's magic
    assert dom.trap.modes.kernel


def test_control_registers_read_as_the_kernel_wrote_them(dom):
    dom.run("mov rax, cr0", "mov rbx, cr4", "mov rcx, 0x6b0", "mov cr4, rcx",
            "mov rdx, cr4")
    assert dom.cpu.read(RAX) == CR0_AT_ENTRY64
    assert dom.cpu.read(RBX) == 0x20  # PAE, as the stub left it
    assert dom.cpu.read(RDX) == 0x6B0 == dom.vcpu.cr4


def test_cli_and_sti_move_the_virtual_and_the_real_if(dom):
    dom.run("sti", "pushfq", "pop rax", "cli", "pushfq", "pop rbx")
    assert dom.cpu.read(RAX) & EFLAGS_IF
    assert not dom.cpu.read(RBX) & EFLAGS_IF
    assert dom.trap.domain.upcall_mask == 1


def test_popfq_cannot_set_if_the_hole(dom):
    """popfq does not fault at CPL 3 and leaves IF alone: nothing to emulate."""
    dom.run("push 0x202", "popfq", "pushfq", "pop rax")
    assert not dom.cpu.read(RAX) & EFLAGS_IF
    assert dom.trap.domain.upcall_mask == 1


def test_hlt_with_the_virtual_if_clear_stops_the_domain(dom):
    dom.run("nop")
    assert dom.halted_at() == CODE + 1
    assert "interrupts disabled" in dom.machine.stop.reason


def test_msrs_of_syscall_and_efer(dom):
    lstar = 0xFFFFFFFF80101234
    dom.run(f"mov ecx, {msrs.LSTAR}", f"mov eax, {lstar & 0xFFFFFFFF}", "mov edx, 0xffffffff",
            "wrmsr", f"mov ecx, {msrs.SFMASK}", "mov eax, 0x700", "xor edx, edx", "wrmsr",
            f"mov ecx, {msrs.LSTAR}", "xor eax, eax", "rdmsr", "mov rbx, rax",
            "mov ecx, 0xc0000080", "rdmsr")
    assert dom.vcpu.msrs[msrs.LSTAR] == lstar
    assert dom.vcpu.msrs[msrs.SFMASK] == 0x700
    assert dom.cpu.read(RBX) == lstar & 0xFFFFFFFF
    assert dom.cpu.read(RAX) == 0x500  # EFER: LME and LMA, as the stub left them


def test_wrmsr_of_a_non_canonical_base_is_the_kernels_gp(dom):
    dom.tables()
    dom.run(*dom.LOAD_TABLES, f"mov ecx, {msrs.LSTAR}", "xor eax, eax", "mov edx, 0x8000",
            "wrmsr")
    assert dom.halted_at() == HANDLER  # the #GP handler's hlt
    error, rip = struct.unpack("<QQ", dom.machine.memory.read_phys(dom.cpu.read(RSP), 16))
    assert error == 0
    assert dom.machine.memory.read_phys(rip, 2) == b"\x0f\x30"  # on the wrmsr


def test_swapgs_exchanges_gs_with_kernel_gs_base(dom):
    dom.run(f"mov ecx, {msrs.KERNEL_GS_BASE}", "mov eax, 0x5000", "xor edx, edx", "wrmsr",
            "mov ecx, 0xc0000101", "mov eax, 0x7000", "wrmsr", "swapgs")
    assert dom.cpu.read(GS_BASE) == 0x5000
    assert dom.vcpu.kernel_gs_base == 0x7000


def test_lgdt_lidt_ltr_load_virtual_registers_and_mark_the_tss_busy(dom):
    dom.tables()
    dom.run(*dom.LOAD_TABLES)
    assert (dom.vcpu.gdt_base, dom.vcpu.gdt_limit) == (GDT, 0x37)
    assert (dom.vcpu.idt_base, dom.vcpu.idt_limit) == (IDT, 0xFFF)
    assert (dom.vcpu.tr, dom.vcpu.tss_base) == (TSSSEL, TSS)
    busy = struct.unpack("<Q", dom.machine.memory.read_phys(GDT + TSSSEL, 8))[0]
    assert busy >> 40 & 0xF == 0xB


def test_lretq_and_mov_ss_load_the_kernels_selectors_with_rpl_3(dom):
    """sgdt would still show the hypervisor's table: only loads are emulated."""
    dom.tables()
    dom.run(*dom.LOAD_TABLES, f"push {KCS}", "lea rax, [rip + 3]", "push rax", "retfq",
            f"mov eax, {KDS}", "mov ss, eax")
    assert dom.cpu.read(CS) == KCS | 3
    assert dom.cpu.read(SS) == KDS | 3
    assert dom.cpu.cpl == 3


def test_iretq_to_the_kernel_restores_the_virtual_if(dom):
    dom.tables()
    dom.run(*dom.LOAD_TABLES, "mov rax, rsp", f"push {KDS}", "push rax", "push 0x202",
            f"push {KCS}", "lea rax, [rip + 3]", "push rax", "iretq", "pushfq", "pop rbx",
            "cli")
    assert dom.cpu.read(RBX) & EFLAGS_IF  # the popped IF, virtual and real
    assert dom.cpu.read(CS) == KCS | 3
    assert dom.trap.modes.kernel


def test_sysretq_enters_user_mode_and_syscall_comes_back_to_lstar(dom):
    """sysretq to USER with R11's flags; the user's syscall reaches LSTAR in kernel
    mode with RCX, R11 and the FMASK'ed flags the hardware gives."""
    dom.tables()
    star = SYSRET_BASE << 48 | KCS << 32
    dom.code(USER, "syscall", "nop")
    dom.code(HANDLER + 0x100, "hlt")
    dom.run(*dom.LOAD_TABLES, *ENABLE_SYSCALL, f"mov ecx, {msrs.STAR}",
            f"mov eax, {star & 0xFFFFFFFF}",
            f"mov edx, {star >> 32}", "wrmsr", f"mov ecx, {msrs.LSTAR}",
            f"mov eax, {HANDLER + 0x100}", "xor edx, edx", "wrmsr",
            f"mov ecx, {msrs.SFMASK}", "mov eax, 0x200", "wrmsr",
            f"mov rcx, {USER}", "mov r11, 0x202", SYSRETQ)
    assert dom.halted_at() == HANDLER + 0x100  # hlt in the kernel: IF masked by FMASK
    assert dom.trap.modes.kernel
    assert dom.cpu.read(RCX) == USER + 2
    assert dom.cpu.read(R11) & EFLAGS_IF
    assert dom.cpu.read(CS) == KCS | 3


def test_a_fault_in_user_mode_reaches_the_idt_on_rsp0_with_the_hardware_frame(dom):
    dom.tables()
    star = SYSRET_BASE << 48 | KCS << 32
    dom.code(USER, "mov rax, cr0")
    dom.run(*dom.LOAD_TABLES, *ENABLE_SYSCALL, f"mov ecx, {msrs.STAR}",
            f"mov eax, {star & 0xFFFFFFFF}",
            f"mov edx, {star >> 32}", "wrmsr", "mov rsp, 0x618000",
            f"mov rcx, {USER}", "mov r11, 0x202", SYSRETQ)
    assert dom.halted_at() == HANDLER
    frame = struct.unpack("<6Q", dom.machine.memory.read_phys(KSTACK - 48, 48))
    error, rip, cs, rflags, rsp, ss = frame
    assert (error, rip, cs, rsp, ss) == (0, USER, UCS, 0x618000, UDS)
    assert rflags & EFLAGS_IF
    assert dom.cpu.read(RSP) == KSTACK - 48
    assert dom.trap.modes.kernel


def test_sysretq_with_efer_sce_clear_is_the_kernels_gp(dom):
    dom.tables()
    dom.run(*dom.LOAD_TABLES, f"mov rcx, {USER}", SYSRETQ)
    assert dom.halted_at() == HANDLER
    assert dom.trap.modes.kernel


def test_invlpg_and_wbinvd_are_emulated_and_skipped(dom):
    dom.run("invlpg [rax]", "wbinvd", "clts")
    assert dom.halted_at() == CODE + 3 + 2 + 2
    assert dom.trap.emulator.emulated_at[CODE] == 1


def test_a_table_in_the_hypervisors_range_crashes_the_domain(dom):
    """lgdt of a base in Xen's slots: the hypervisor would read (and ltr write) it with
    its own rights, so the kernel's pointer is refused."""
    dom.write(CODE - 0x100, struct.pack("<HQ", 0x37, 0xFFFF820000000000))
    dom.run(f"mov rax, {CODE - 0x100}", "lgdt [rax]", "mov ax, 0x28", "ltr ax")
    assert dom.machine.stop.kind is StopKind.CRASH
    assert "reaches the hypervisor's range" in dom.machine.stop.reason


def test_a_kernel_stack_in_the_hypervisors_range_crashes_the_domain(dom):
    dom.tables()
    dom.run(*dom.LOAD_TABLES, "mov rsp, 0xffff820000001000", "mov rax, cr8")
    assert dom.machine.stop.kind is StopKind.CRASH
    assert "reaches the hypervisor's range" in dom.machine.stop.reason


def test_a_gate_with_an_ist_slot_runs_on_that_stack(dom):
    """The double-fault gate's way (minikern64's DFIST): IST1 of the kernel's TSS."""
    dom.tables()
    ist1 = 0x638000
    dom.write(TSS + 0x24, struct.pack("<Q", ist1))
    gate = HANDLER & 0xFFFF | KCS << 16 | 1 << 32 | 0x8E << 40 | (HANDLER >> 16 & 0xFFFF) << 48
    dom.write(IDT + 16 * 13, struct.pack("<QQ", gate, HANDLER >> 32))
    dom.run(*dom.LOAD_TABLES, "mov rax, cr8")
    assert dom.halted_at() == HANDLER
    assert dom.cpu.read(RSP) == ist1 - 48  # error code, RIP, CS, RFLAGS, RSP, SS
    error, rip, cs = struct.unpack("<3Q", dom.machine.memory.read_phys(ist1 - 48, 24))
    assert (error, cs) == (0, FLAT_KERNEL_CS64 & ~3)  # the kernel's CS shown with RPL 0


def test_int_n_from_user_mode_through_a_dpl_0_gate_is_a_gp(dom):
    """`int 0x40` at user level, its gate DPL 0: #GP on the instruction, with the
    error code the machine's delivery gives for a 16-byte gate, QEMU's (do_interrupt64:
    intno * 16 + 2), the oracle native mode follows."""
    dom.tables()
    star = SYSRET_BASE << 48 | KCS << 32
    gate = 0x700000 & 0xFFFF | KCS << 16 | 0x8E << 40 | (0x700000 >> 16 & 0xFFFF) << 48
    dom.write(IDT + 16 * 0x40, struct.pack("<QQ", gate, 0))
    dom.code(USER, "int 0x40")
    dom.run(*dom.LOAD_TABLES, *ENABLE_SYSCALL, f"mov ecx, {msrs.STAR}",
            f"mov eax, {star & 0xFFFFFFFF}", f"mov edx, {star >> 32}", "wrmsr",
            f"mov rcx, {USER}", "mov r11, 0x202", SYSRETQ)
    assert dom.halted_at() == HANDLER
    error, rip, cs = struct.unpack("<3Q", dom.machine.memory.read_phys(KSTACK - 48, 24))
    assert (error, rip, cs) == (0x40 * 16 + 2, USER, UCS)


def test_user_modes_view_is_built_again_only_when_the_tables_may_have_changed(dom,
                                                                               monkeypatch):
    """A view is rebuilt after a store into the tables in use (a ptwr exit) or a mov to
    CR3, and reused otherwise: a system call's return costs no rebuild."""
    built = []
    build = dom.trap.modes.user_view.build
    monkeypatch.setattr(dom.trap.modes.user_view, "build",
                        lambda mfn: built.append(mfn) or build(mfn))
    modes = dom.trap.modes
    for _ in range(2):
        modes.to_user()
        modes.to_kernel()
    assert len(built) == 1
    dom.machine.exits[Exit.PTWR] += 1  # as hv/traps.py counts an emulated store
    modes.to_user()
    assert len(built) == 2


def test_iretq_to_the_users_code_with_rpl_0_is_the_kernels_gp_and_changes_nothing(dom):
    """The user's code segment is DPL 3: an iretq naming it with RPL 0 faults, as on
    the CPU, before anything is popped or switched."""
    dom.tables()
    dom.run(*dom.LOAD_TABLES, "mov rax, rsp", f"push {KDS}", "push rax", "push 0x202",
            f"push {UCS & ~3}", "push 0x1234", "iretq")
    assert dom.halted_at() == HANDLER
    frame = struct.unpack("<2Q", dom.machine.memory.read_phys(dom.cpu.read(RSP), 16))
    assert frame[0] == UCS & ~3  # the #GP's error code: the selector, as natively
    assert dom.machine.memory.read_phys(frame[1], 2) == b"\x48\xcf"  # on the iretq
    assert dom.trap.modes.kernel


def test_iretq_to_a_non_canonical_address_is_the_kernels_gp(dom):
    dom.tables()
    dom.run(*dom.LOAD_TABLES, "mov rax, rsp", f"push {KDS}", "push rax", "push 0x202",
            f"push {KCS}", "mov rax, 0x0000800000000000", "push rax", "iretq")
    assert dom.halted_at() == HANDLER
