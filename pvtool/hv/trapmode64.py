"""Trap-and-emulate for 64-bit kernels: an UNPATCHED x86-64 Multiboot kernel runs at
CPL 3 under the hypervisor, as Xen runs a 64-bit PV kernel (XEN-ABI64.md 1.1), and
each privileged instruction faults and is emulated (hv/trapemulate64.py).

The boot. The kernel starts at its 64-bit entry (the ELF entry, start64 of
guests/lib64/entry.S) with the state its Multiboot stub would have left: long mode,
RDI the Multiboot magic, RSI the information structure's physical address, and page
tables that map low RAM both at 0 and at the kernel's link base. Its 32-bit stub is
not run: it enters long mode with paging off, which a CPL-3 guest on Unicorn's 64-bit
CPU cannot be given, and Xen starts a 64-bit kernel in long mode too, so trap mode and
PV start from the same place. The boot tables are the hypervisor's frames
(hv/trapboot64.py); the kernel's own tables become the base when it loads CR3,
validated as NEW_BASEPTR's with the PV rules (4-level, Xen's slots, no writable
mapping of a table in use: an unmodified kernel's are made read-only, and its stores
into them fault and are validated, hv/ptwr.py), so the comparison with PV is fair.

Kernel and user mode are the hypervisor's state (Vcpu64.kernel_mode, as Xen's
TF_kernel_mode): a delivery from user mode or a syscall switches to kernel mode, an
emulated iretq or sysretq to ring 3 back to user mode, on a view of the kernel's
tables that keeps the kernel's own pages out of reach (hv/userview64.py).

Interrupts go through the kernel's own 64-bit IDT (lidt is recorded), with the
hardware's frame, the TSS's RSP0 from user mode and its IST stacks; frames show the
kernel's CS and SS with RPL 0 and RFLAGS.IF as the virtual IF, so the kernel's iretq
back into itself faults and is emulated. A `syscall` goes to LSTAR with the
hardware's RCX, R11 and FMASK.
"""

from collections.abc import Callable
from dataclasses import replace

from pvtool.errors import UnsupportedImageError
from pvtool.hv.domain import Domain
from pvtool.hv.errors import DomainCrash
from pvtool.hv.pagemodes import DEVICE_PAGES, PC_KERNEL_FOUR_LEVEL
from pvtool.hv.trapboot64 import (
    BOOT_L4,
    USER_VIEW,
    USER_VIEW_PAGES,
    enter_cpl3,
    kernel_base,
    write_hypervisor_frames,
)
from pvtool.hv.trapemulate64 import (
    GeneralProtection,
    TrapEmulator64,
    check_guest_range,
)
from pvtool.hv.trapmode import SensitiveWatch, TrapModeSupervisor
from pvtool.hv.traps import take_page_fault
from pvtool.hv.userview64 import UserView
from pvtool.machine.context import DESC_DPL_SHIFT, SS_INDEX, SegmentCache
from pvtool.machine.cpu import (
    CR2,
    CR3,
    EAX,
    EBX,
    GPRS64_BY_NAME,
    R11,
    RFLAGS,
    RIP,
    RSP,
    SS,
)
from pvtool.machine.delivery import (
    Delivery,
    DeliveryFault,
    Frame,
    Gate,
    read_idt_gate,
    read_tss64_stack,
    write_guest,
)
from pvtool.machine.exits import Exit
from pvtool.machine.fast_call import FastCall, FastCallKind
from pvtool.machine.interruption import Interruption, Kind
from pvtool.machine.loader import KernelImage, load_multiboot
from pvtool.machine.pc import Machine
from pvtool.x86 import msrs
from pvtool.x86.msrs import EFER_SCE
from pvtool.x86.paging import PAGE_SHIFT, PF_U, PagingMode
from pvtool.x86.registers import EFLAGS_IF, EFLAGS_IOPL
from pvtool.x86.tss import TSS64_IST1, TSS64_RSP0
from pvtool.x86.vectors import Vector

KERNEL, USER = 0, 3  # the ring the kernel believes each mode runs in
RDI, RSI = GPRS64_BY_NAME["rdi"], GPRS64_BY_NAME["rsi"]


def boot_trap_domain64(machine: Machine, image: KernelImage, *, cmdline: bytes = b"",
                       modules=(), trace: Callable[[str], None] | None = None
                       ) -> "TrapMode64":
    """Load IMAGE as a Multiboot loader would, then start its 64-bit entry at CPL 3."""
    machine.show_firmware_screen()
    load_multiboot(machine, image, cmdline=cmdline, modules=modules)
    if machine.cpu.read(RIP) == image.entry:
        raise UnsupportedImageError(
            f"{image.path}: its ELF entry {image.entry:#x} is its 32-bit Multiboot entry; "
            "--trap starts a 64-bit kernel at a 64-bit ELF entry, as Xen does (the "
            "Multiboot header's entry_addr is the 32-bit stub, e_entry the 64-bit code)")
    magic, info = machine.cpu.read(EAX) & 0xFFFFFFFF, machine.cpu.read(EBX) & 0xFFFFFFFF
    stack = machine.cpu.read(RSP)
    write_hypervisor_frames(machine, kernel_base(image))
    trap = TrapMode64(machine, image, trace)
    trap.domain.upcall_mask = 1  # Multiboot enters with IF clear
    machine.attach(trap.supervisor)
    enter_cpl3(machine, image.entry, stack)
    machine.cpu.write(RDI, magic)
    machine.cpu.write(RSI, info)
    return trap


class Modes:
    """Kernel and user mode, the hypervisor's state; and the page tables of each."""

    def __init__(self, domain: Domain):
        self.domain = domain
        self.cpu = domain.machine.cpu
        self.state = domain.vcpu.long_mode
        self.user_view = UserView(domain.memory, USER_VIEW, USER_VIEW_PAGES)
        self.bases_loaded = 0  # mov cr3s so far: each may bring changed tables
        self._view: tuple[tuple[int, int, int], int] | None = None  # (key, its L4)

    @property
    def kernel(self) -> bool:
        return self.state.kernel_mode

    def new_kernel_base(self, mfn: int) -> None:
        """A mov to CR3: the L4 is validated and loaded."""
        self.domain.pagetables.new_baseptr(mfn)
        self.bases_loaded += 1

    def to_user(self) -> None:
        """User mode, on the kernel's tables with its own pages supervisor-only."""
        self.state.kernel_mode = False
        self.cpu.write(CR3, self._user_l4())

    def _user_l4(self) -> int:
        """The view of the current tables, built again only when they may have changed:
        after a mov to CR3, or a store into them (each a ptwr exit: the tables in use
        are read-only to the kernel, hv/ptwr.py). A view costs some 2 ms to build."""
        key = (self.domain.pagetables.base_mfn, self.bases_loaded,
               self.domain.machine.exits[Exit.PTWR])
        if self._view is None or self._view[0] != key:
            self._view = key, self.user_view.build(key[0])
            self.domain.memory.forget_translations()  # the view's frames are reused
        return self._view[1]

    def to_kernel(self) -> None:
        self.state.kernel_mode = True
        self.cpu.write(CR3, self.domain.pagetables.base_mfn << PAGE_SHIFT)


class TrapMode64:
    """The running 64-bit trap-and-emulate guest."""

    def __init__(self, machine: Machine, image: KernelImage,
                 trace: Callable[[str], None] | None):
        self.machine = machine
        self.domain = Domain(machine, base_mfn=BOOT_L4 >> PAGE_SHIFT,
                             paging=PagingMode.FOUR_LEVEL, rules=PC_KERNEL_FOUR_LEVEL,
                             console_output=machine.output, trace=trace)
        for page in DEVICE_PAGES:  # the PC's devices are the kernel's (I/O privilege)
            self.domain.frames.share(page >> PAGE_SHIFT, self.domain.domid)
        self.modes = Modes(self.domain)
        self.emulator = TrapEmulator64(self.domain, self.modes)
        self.supervisor = TrapMode64Supervisor(self)
        self.watch = SensitiveWatch(machine, image, self.emulator)

    def sensitive_report(self):
        return self.watch.report()


class KernelIdt64:
    """The DeliveryRules of 64-bit trap-and-emulate: the kernel's own IDT and TSS,
    its ring 0 played by CPL 3 in kernel mode. Every delivery counts as a ring change
    to the kernel's ring 0 (so the frame always has SS:RSP, as in long mode, and a
    delivery from user mode takes RSP0); from kernel mode the stack stays."""

    def __init__(self, trap: TrapMode64):
        self.domain = trap.domain
        self.cpu = trap.machine.cpu
        self.memory = trap.domain.memory
        self.modes = trap.modes
        self.vcpu = trap.emulator.vcpu
        self.emulator = trap.emulator

    def gate(self, vector: int, software: bool, ip: int) -> Gate:
        return read_idt_gate(self._read, self.vcpu.idt_base, self.vcpu.idt_limit,
                             vector, 64)

    def ring(self, cpl: int) -> int:
        return KERNEL if self.modes.kernel else USER

    def handler_cs(self, gate: Gate, cpl: int) -> int:
        try:
            self.emulator.segment_cache(gate.selector, code=True)
        except GeneralProtection:
            raise DeliveryFault(Vector.GP, gate.selector & ~3,
                                f"the gate names cs {gate.selector:#x}, not 64-bit code") \
                from None
        return gate.selector & ~3

    def kernel_stack(self, ring: int) -> tuple[int, int]:
        if self.modes.kernel:
            return self.cpu.read(SS), self.cpu.read(RSP)
        return 0, self._tss_stack(TSS64_RSP0)

    def interrupt_stack(self, ist: int) -> int:
        return self._tss_stack(TSS64_IST1 + 8 * (ist - 1))

    def _tss_stack(self, offset: int) -> int:
        if not self.vcpu.tr:
            raise DomainCrash("an interrupt needs the TSS's stack before the kernel "
                              "loaded one (ltr)")
        return read_tss64_stack(self._read,
                                (self.vcpu.tr, self.vcpu.tss_base, self.vcpu.tss_limit),
                                offset)

    def shown(self, frame: Frame) -> Frame:
        flags = frame.flags & ~(EFLAGS_IF | EFLAGS_IOPL)
        if not self.modes.kernel:
            return replace(frame, flags=flags | EFLAGS_IF)
        virtual_if = 0 if self.domain.upcall_mask else EFLAGS_IF
        return replace(frame, cs=frame.cs & ~3, ss=frame.ss & ~3, flags=flags | virtual_if)

    def write_stack(self, address: int, data: bytes) -> None:
        check_guest_range(self.domain, address, len(data))
        write_guest(self.memory.write_virt, address, data)

    def _read(self, address: int, size: int) -> bytes:
        """The kernel's tables (IDT, TSS), read with the hypervisor's rights: checked."""
        check_guest_range(self.domain, address, size)
        return self.memory.read_virt(address, size)

    def on_entry(self, flags: int, gate: Gate) -> int:
        """The virtual IF survives a trap gate and is cleared by an interrupt gate."""
        virtual_if = not gate.clears_if and (not self.modes.kernel
                                             or not self.domain.upcall_mask)
        self.domain.upcall_mask = 0 if virtual_if else 1
        return flags & ~EFLAGS_IF | (EFLAGS_IF if virtual_if else 0)

    def enter(self, ring_change: bool, *, cs: int, eip: int, ss: int, esp: int,
              eflags: int) -> None:
        """From user mode: kernel mode, a null SS (long mode's, 6.14.4); from kernel
        mode the stack segment stays, as on the CPU when the ring does not change."""
        if self.modes.kernel:
            stack = self.cpu.segment(SS_INDEX)
        else:
            self.modes.to_kernel()
            stack = SegmentCache(USER, 0, 0, USER << DESC_DPL_SHIFT)
        self.cpu.load_segments(self.emulator.segment_cache(cs, code=True), stack)
        for reg, value in ((RSP, esp), (RFLAGS, eflags), (RIP, eip)):
            self.cpu.write(reg, value)

    def set_cr2(self, address: int) -> None:
        self.vcpu.cr2 = address

    def switch_task(self, gate: Gate, error_code: int | None, ip: int) -> None:
        raise DomainCrash("a task gate in a 64-bit IDT")

    def triple_fault(self, why: str, ip: int, address: int | None) -> None:
        raise DomainCrash(f"triple fault after {why}", address)


class TrapMode64Supervisor(TrapModeSupervisor):
    """Every interrupt, exception and system call of a 64-bit trap-mode guest: the
    32-bit supervisor's interrupt timing, with the 64-bit delivery and modes."""

    def __init__(self, trap: TrapMode64):
        self.domain = trap.domain
        self.vcpu = trap.domain.vcpu
        self.cpu = trap.machine.cpu
        self.modes = trap.modes
        self.emulator = trap.emulator
        self.exits = trap.machine.exits
        self.delivery = Delivery(self.cpu, KernelIdt64(trap), self.exits)

    def _route(self, event: Interruption) -> None:
        if not event.software and event.vector in (Vector.GP, Vector.NP) \
                and self.modes.kernel and self.emulator.emulate_privileged(event.ip):
            self.exits[Exit.EMULATED] += 1
            self._after_emulation()
            return
        if not event.software and event.vector == Vector.PF:
            event = self._as_native(event)
            if take_page_fault(self.domain, event, self.modes.kernel):
                return
            self.emulator.vcpu.cr2 = self.cpu.read(CR2)
        self.delivery.deliver(event)

    def _as_native(self, fault: Interruption) -> Interruption:
        """A #PF's error code with the U bit saying where the kernel believes it ran:
        clear in kernel mode (the CPU set it, the CPL being 3), as Xen rewrites it."""
        error_code = fault.error_code & ~PF_U | (0 if self.modes.kernel else PF_U)
        return Interruption(fault.vector, Kind.EXCEPTION, ip=fault.ip, error_code=error_code)

    def interrupts_enabled(self) -> bool:
        return not self.modes.kernel or not self.domain.upcall_mask

    def on_fast_call(self, fast: FastCall) -> None:
        """syscall, from either mode (as the CPU, which knows no modes): RCX the next
        RIP, R11 RFLAGS, RFLAGS less FMASK, CS and SS from STAR[47:32], to LSTAR.
        With EFER.SCE clear, and for sysenter (no SYSENTER MSRs are emulated), #UD."""
        try:
            self._system_call(fast)
        except DomainCrash as crash:
            self.domain.crash(crash.reason, crash.address)

    def _system_call(self, fast: FastCall) -> None:
        vcpu = self.emulator.vcpu
        if fast.kind is not FastCallKind.SYSCALL or not vcpu.efer & EFER_SCE:
            self.delivery.deliver(Interruption(Vector.UD, Kind.EXCEPTION, ip=fast.ip))
            fast.resume = self.cpu.read(RIP)
            return
        self.exits[Exit.SYSCALL] += 1
        rflags = self.cpu.read(RFLAGS)
        if not self.modes.kernel:
            rflags |= EFLAGS_IF  # the user's RFLAGS: ring 3 always runs with IF set
        self.cpu.write(GPRS64_BY_NAME["rcx"], fast.next_ip)
        self.cpu.write(R11, rflags)
        self.modes.to_kernel()
        selector = vcpu.msrs[msrs.STAR] >> 32 & 0xFFFC
        self.emulator.load_flat_segments(selector, selector + 8)
        self.emulator.resume_with_flags(rflags & ~vcpu.msrs[msrs.SFMASK])
        fast.resume = vcpu.msrs[msrs.LSTAR]
