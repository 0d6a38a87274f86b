"""How a 64-bit PV domain enters the hypervisor and leaves it (XEN-ABI64.md §1.2-1.6):
the supervisor of a 64-bit guest's CPU.

The guest kernel and its user programs both run at CPL 3; which one is running is
Vcpu64.kernel_mode. So `syscall` means two things: from the kernel it is a hypercall
(number in RAX, arguments in RDI, RSI, RDX, R10, R8), from user mode a system call
bounced to the kernel's syscall callback. `sysenter` and `int $0x80` from user mode go
to their callbacks too. Exceptions and `int n` are bounced through the 64-bit trap
table with Xen's rules (DPL checks, the #PF error code's U bit, CR2 in vcpu_info), a
#GP in kernel mode is first offered to the emulator (hv/emulate64.py), and events are
delivered on the way back to the guest, as Xen's test_guest_events does.

A redirect made from a fast call goes through `call.resume` (the machine knows
Unicorn's +2); one made from an interruption writes RIP.
"""

import struct
from dataclasses import replace

from pvtool.abi.xen import CallbackType
from pvtool.abi.xen64 import (
    EXCEPTIONS_WITH_ERROR_CODE_64,
    FLAT_RING3_CS32,
    FLAT_RING3_SS64,
    VCPU_INFO_64,
)
from pvtool.hv.bounce64 import Interrupted, bounce, interrupted_at, resume_at
from pvtool.hv.domain import PvDomain
from pvtool.hv.emulate64 import Emulator64
from pvtool.hv.errors import DomainCrash
from pvtool.hv.hypercalls import QUIET, TABLE_64, call
from pvtool.hv.hypercalls.common import NO_RESULT
from pvtool.hv.ptwr import handle_write_fault
from pvtool.hv.traps import HYPERCALL_EXIT, PTWR_EXIT, PvSupervisor, _vector_name
from pvtool.hv.trapsites64 import TrapSites64
from pvtool.hv.vcpu64 import Callback64, Vcpu64
from pvtool.machine.cpu import CR2
from pvtool.machine.exits import Exit
from pvtool.machine.fast_call import FastCall, FastCallKind
from pvtool.machine.interruption import Interruption
from pvtool.x86.paging import PF_U
from pvtool.x86.registers import EFLAGS_DF, EFLAGS_IF
from pvtool.x86.vectors import Vector, idt_error_code, vector_name

VCPU_CR2_64 = VCPU_INFO_64.offset("cr2")
INT80 = 0x80
KERNEL_IOPL, USER_IOPL = 1, 3  # the vIOPL port I/O needs in each mode (iopl_ok)
NO_DPL_CHECK = (Vector.BP, Vector.OF)  # int3 and into: Xen's IDT gates are DPL 3
SYSENTER_CS = 3  # the frame sysenter_entry builds: CS 3, RIP and RSP 0
SYSCALL = FastCallKind.SYSCALL  # read on every hypercall: a global is cheaper
EVENT_CALLBACK = CallbackType.event
# A hypercall's number and arguments in the order they lie in QEMU's CPUX86State
# (regs[]: RAX, RDX, RSI, RDI, R8, R10), so that one unpack reads them with no
# reordering call; on_fast_call puts the arguments in the ABI's order
# (HYPERCALL_ARGUMENT_REGISTERS: RDI, RSI, RDX, R10, R8; tests/hv/test_entry64.py
# checks both orders).
IN_STATE_ORDER = ("rax", "rdx", "rsi", "rdi", "r8", "r10")


class Pv64Supervisor(PvSupervisor):
    """The supervisor of a 64-bit PV domain. It shares the 32-bit one's event and
    device-interrupt timing (PvSupervisor) and replaces every entry path."""

    direct_vector = None  # hypercalls come by syscall; `int 0x82` is any `int n`

    def __init__(self, domain: PvDomain, trap_sites: dict[int, bytes] | None = None):
        super().__init__(domain, Emulator64(domain))
        self.trap_sites = TrapSites64(domain, trap_sites or {})
        cpu = domain.machine.cpu
        self._call_registers = cpu.reader(tuple(cpu.width.gprs[n] for n in IN_STATE_ORDER))

    @property
    def state(self) -> Vcpu64:
        """The running vCPU's 64-bit state (hv/scheduler.py switches vCPUs)."""
        return self.domain.vcpu.long_mode

    # -- syscall and sysenter ---------------------------------------------------------
    def on_fast_call(self, fast: FastCall) -> None:
        """From the kernel a `syscall` is a hypercall (§1.2), taken here, in this one
        frame (the hot path: every frame costs a tenth of an empty hook). The mode is
        the vCPU's flag, not CS (the CPL is always 3), so CS is not read; the number
        and arguments come in one unpack of the CPU's state in place, the result goes
        back in one store, and RIP is neither read nor written (the machine lets
        Unicorn step past the syscall). RCX and R11 are left alone: Xen's SYSRET
        would load them with RIP and RFLAGS, and every hypercall-page entry saves and
        restores both around the syscall. The return path is the 32-bit one's
        (_on_return): timers only after a hypercall not QUIET, an event only with a
        callback registered. From user mode, a system call."""
        try:
            state = self.domain.vcpu.long_mode  # self.state, without its frame
            if fast.kind is not SYSCALL or not state.kernel_mode:
                self._from_user(fast)
                return
            self.exits[HYPERCALL_EXIT] += 1
            number, rdx, rsi, rdi, r8, r10 = self._call_registers()
            domain = self.domain
            result = call(domain, domain.vcpu, number, (rdi, rsi, rdx, r10, r8), TABLE_64)
            if result is not NO_RESULT:
                self._set_result(result)
            resume = state.resume  # HYPERVISOR_iret's return address
            if resume is not None:
                fast.resume, state.resume = resume, None
            if domain.machine.stop is not None:
                return
            if number not in QUIET:
                domain.events.fire_due_timer()
            if state.callbacks and self._event_deliverable():
                at = interrupted_at(self.cpu, fast.next_ip if resume is None else resume)
                fast.resume = self._upcall(at)
        except DomainCrash as crash:
            self.domain.crash(crash.reason, crash.address)

    def _from_user(self, fast: FastCall) -> None:
        if fast.kind is SYSCALL:
            self._user_syscall(fast)
        else:
            self._sysenter(fast)

    def _user_syscall(self, fast: FastCall) -> None:
        """A user program's syscall (§1.4): to the syscall callback (syscall32 from
        compat code) on a frame whose RCX and R11 hold what the hardware's syscall
        would have put there; no callback: #UD at the syscall."""
        next_ip = fast.next_ip  # read under the user's tables, before the toggle
        at = interrupted_at(self.cpu, next_ip, by_syscall=True)
        kind = CallbackType.syscall32 if at.cs & 0xFFFF == FLAT_RING3_CS32 \
            else CallbackType.syscall
        callback = self.state.callbacks.get(kind)
        if callback is None:
            fast.resume = self._exception(Vector.UD, None, _at_ip(at, fast.ip))
            return
        fast.resume = self._to_callback(callback, at, f"{kind.name} callback",
                                        clears=EFLAGS_DF)

    def _sysenter(self, fast: FastCall) -> None:
        """sysenter (§1.4): the frame has no return address (RIP and RSP 0, CS 3);
        no callback: #GP(0)."""
        live = interrupted_at(self.cpu, 0)
        at = Interrupted(0, SYSENTER_CS, live.rflags | EFLAGS_IF, 0, live.rcx, live.r11,
                         FLAT_RING3_SS64)
        callback = self.state.callbacks.get(CallbackType.sysenter)
        if callback is None:
            fast.resume = self._exception(Vector.GP, 0, at)
            return
        fast.resume = self._to_callback(callback, at, "sysenter callback")

    def _to_callback(self, callback: Callback64, at: Interrupted, name: str,
                     clears: int = 0) -> int:
        self.exits[Exit.SYSCALL] += 1
        if self.domain.trace:
            self.domain.log(f"{name} at {at.rip:#x} to {callback.address:#x}")
        return bounce(self.domain, self.state, callback.address, at,
                      masks_events=callback.masks_events, clears=clears)

    # -- interrupts and exceptions ----------------------------------------------------
    def on_interruption(self, event: Interruption) -> None:
        try:
            handler = self._software_interrupt64(event) if event.software \
                else self._fault(event)
            if handler is not None:
                resume_at(self.cpu, handler)
        except DomainCrash as crash:
            self.domain.crash(crash.reason, crash.address)

    def on_page_fault(self, ip: int, error_code: int) -> None:
        """PvSupervisor.on_page_fault by the 64-bit ABI: _page_fault, with no
        Interruption made (the path of every PTE store)."""
        try:
            handler = self._page_fault(ip, error_code)
            if handler is not None:
                resume_at(self.cpu, handler)
        except DomainCrash as crash:
            self.domain.crash(crash.reason, crash.address)

    def _software_interrupt64(self, event: Interruption) -> int | None:
        """int3 and into go to their handlers; int $0x80 to its handler if it has one
        (entry_int80's direct trap); any other `int n` only if its DPL allows the
        mode, else #GP((n<<3)|2) at the instruction (do_general_protection)."""
        vector = event.vector
        # A trap site stands for a kernel instruction: from user mode it is an int3.
        site = event.ip - 1
        if vector == Vector.BP and self.state.kernel_mode \
                and self.trap_sites.is_trap_site(site):
            self.exits[Exit.TRAP_SITE] += 1
            return self.trap_sites.emulate(site)
        at = interrupted_at(self.cpu, event.ip)
        info = self.state.trap_table.get(vector)
        allowed = info is not None and (
            vector in NO_DPL_CHECK or vector == INT80
            or info.dpl == 3 or self.state.kernel_mode and info.dpl >= 1)
        if vector in NO_DPL_CHECK or allowed:
            self.exits[Exit.INTERRUPT] += 1
            return self._exception(vector, None, at)
        self.exits[Exit.EXCEPTION] += 1
        return self._exception(Vector.GP, idt_error_code(vector),
                               _at_ip(at, event.ip - event.length))

    def _fault(self, event: Interruption) -> int | None:
        vector, ip = event.vector, event.ip
        if vector == Vector.PF:
            return self._page_fault(ip, event.error_code or 0)
        if vector == Vector.UD and self.emulator.forced_cpuid(ip) \
                or vector == Vector.GP and self.state.kernel_mode \
                and self.emulator.emulate_privileged(ip):
            self.exits[Exit.EMULATED] += 1
            return None
        error_code = event.error_code or 0 if vector in EXCEPTIONS_WITH_ERROR_CODE_64 else None
        self.exits[Exit.EXCEPTION] += 1
        return self._exception(vector, error_code, interrupted_at(self.cpu, ip))

    def _page_fault(self, ip: int, error_code: int) -> int | None:
        """A #PF. Its error code as the guest sees it has the U bit say whether the
        guest was in user mode, not the CPL, which is always 3 (pv/traps.c). A kernel
        store into a page table it maps read-only is emulated as Xen's writable page
        tables do for a 64-bit PV guest (pv/ro-page-fault.c, ptwr_do_page_fault:
        hv/ptwr.py), in L1s only unless the domain's rules say every level (a patched
        PC kernel's, hv/pagemodes.py): the path of every PTE store, so the vCPU's mode
        is read once. Any other #PF is bounced with its address in
        vcpu_info.arch.cr2 (8 bytes at 16 on 64-bit)."""
        address = self.cpu.read(CR2)
        kernel = self.domain.vcpu.long_mode.kernel_mode
        error_code = error_code & ~PF_U | (0 if kernel else PF_U)
        if kernel and handle_write_fault(self.domain, address, error_code):
            self.exits[PTWR_EXIT] += 1
            return None
        self.domain.memory.write_phys(self.domain.vcpu.info + VCPU_CR2_64,
                                      struct.pack("<Q", address))
        self.exits[Exit.EXCEPTION] += 1
        return self._exception(Vector.PF, error_code, interrupted_at(self.cpu, ip), address)

    def _exception(self, vector: int, error_code: int | None, at: Interrupted,
                   address: int | None = None) -> int:
        """Bounce VECTOR to its trap-table handler and answer where to resume; with
        no handler the domain is crashed (at ADDRESS, a #PF's), since Xen could only
        loop on the fault. The reason reads as a 32-bit domain's (hv/bounce.py)."""
        info = self.state.trap_table.get(vector)
        if self.domain.trace:
            error = "" if error_code is None else f" error {error_code:#x}"
            self.domain.log(f"bounce {_vector_name(vector)}{error} at {at.rip:#x}")
        if info is None:
            what = vector_name(vector) + ("" if address is None else f" at {address:#x}")
            raise DomainCrash(f"{what} at {at.rip:#x} and no handler for it "
                              "(set_trap_table)", address)
        return bounce(self.domain, self.state, info.address, at, error_code=error_code,
                      masks_events=info.masks_events)

    def _has_handler(self, vector: int) -> bool:
        """The 64-bit trap table is the vCPU's long-mode state's (traps64.py)."""
        return vector in self.state.trap_table

    def _bounce(self, event: Interruption) -> None:
        """A device interrupt's vector, through the trap table (PvSupervisor)."""
        resume_at(self.cpu, self._exception(event.vector, None,
                                             interrupted_at(self.cpu, event.ip)))

    def port_allowed(self, port: int, size: int) -> bool:
        """Port I/O needs the I/O privilege of the mode (Xen's iopl_ok): the kernel's
        vIOPL of at least 1 (physdev_op set_iopl), or 3 in user mode; without it the
        machine raises #GP(0) at the instruction, which is bounced to the guest as
        Xen does (hv/ioports.py has the 32-bit rules, I/O bitmap included)."""
        self._devices_may_interrupt = True
        needed = KERNEL_IOPL if self.state.kernel_mode else USER_IOPL
        allowed = self.domain.iopl >= needed
        if not allowed and self.domain.trace:
            mode = "kernel" if self.state.kernel_mode else "user"
            self.domain.log(f"port {port:#x}: no I/O privilege in {mode} mode: #GP(0)")
        return allowed

    # -- events -----------------------------------------------------------------------
    def _event_deliverable(self) -> bool:
        """Whether the event callback should be entered now (Xen's
        test_guest_events): evtchn_upcall_pending first, as on 32-bit
        (_deliver_event), since it is clear most of the time and costs one read of
        guest memory; then the callback, the mask and a selected word."""
        dom = self.domain
        return (dom.upcall_pending != 0 and EVENT_CALLBACK in dom.vcpu.long_mode.callbacks
                and not dom.upcall_mask and dom.events.work_pending())

    def _take_event(self) -> None:
        self.domain.events.fire_due_timer()
        if self._event_deliverable():
            resume_at(self.cpu, self._upcall(interrupted_at(self.cpu, self.cpu.ip)))

    def _upcall(self, at: Interrupted) -> int:
        """Xen's upcall: to the event callback, events masked (TBF_INTERRUPT)."""
        address = self.state.callbacks[CallbackType.event].address
        self.exits[Exit.UPCALL] += 1
        if self.domain.trace:
            self.domain.log(f"event upcall to {address:#x} at {at.rip:#x}")
        self.domain.events.update_time()
        return bounce(self.domain, self.state, address, at, masks_events=True)


def _at_ip(at: Interrupted, rip: int) -> Interrupted:
    return replace(at, rip=rip)
