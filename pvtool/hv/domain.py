"""A domain: a guest kernel the hypervisor runs (its memory, its vCPUs and their GDTs, page
tables), the PV state Xen's interface adds to it, and the two ways it can end
(shutdown on request, crash on misbehaviour).

Hypercall handlers see a PvDomain and a VCpu and never Unicorn: guest memory comes
through copy_from_guest / copy_to_guest, which check every pointer the way Xen's
copy_{from,to}_guest do (through the guest's page tables, never into the
hypervisor's range), and fail with -EFAULT.
"""

import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter

from pvtool.abi import pvtool as pvabi
from pvtool.abi.layouts import VCPU_INFO, VCPU_RUNSTATE_INFO
from pvtool.abi.xen import (
    DOMID_SELF,
    GUEST_DOMID,
    GUEST_KERNEL_RPL,
    HYPERCALL_ARGUMENT_REGISTERS,
    HYPERCALL_NUMBER_REGISTER,
    Errno,
    RunstateState,
    hypercall_name,
)
from pvtool.abi.xen64 import VCPU_RUNSTATE_INFO_64
from pvtool.hv import layout
from pvtool.hv.builder import CONSOLE_EVTCHN, STORE_EVTCHN
from pvtool.hv.console import ConsoleRing
from pvtool.hv.debugreg import DebugRegisters
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.hv.events import DEFAULT_PERIOD_NS, EventChannels
from pvtool.hv.frames import machine_frames
from pvtool.hv.gdt import Gdt
from pvtool.hv.grants import GrantTable
from pvtool.hv.pagemodes import PagingRules
from pvtool.hv.pagetables import PageTables
from pvtool.hv.runstate import Runstate
from pvtool.hv.scheduler import VcpuScheduler
from pvtool.hv.vcpu64 import Vcpu64
from pvtool.machine.cpu import CS, GDTR, Cpu
from pvtool.machine.delivery import read_tss_stack
from pvtool.machine.exits import Exit
from pvtool.machine.memory import GuestMemory, PageFault
from pvtool.machine.pc import Machine
from pvtool.machine.rings import RingSwitch
from pvtool.machine.stop import Stop, StopKind
from pvtool.x86.paging import PAGE_SIZE, PagingMode

USER_RING = 3  # the least privileged: RingSwitch goes through ring 0 from there
UPCALL_PENDING = VCPU_INFO.offset("evtchn_upcall_pending")
UPCALL_MASK = VCPU_INFO.offset("evtchn_upcall_mask")
# How deep glue_failure looks for a return address into a site: pv_fatal's caller
# saved eflags and eight registers, and may itself have been called by another glue
# function that did the same.
GLUE_FAILURE_STACK_SLOTS = 64


@dataclass(frozen=True)
class TrapInfo:
    vector: int
    dpl: int  # the lowest privilege allowed to raise it with `int n`
    masks_events: bool  # like an interrupt gate: events are masked on entry
    cs: int
    address: int


def running_vcpus(name: str, doc: str) -> property:
    """A domain attribute that is the running vCPU's NAME: Xen keeps it per vCPU."""
    return property(attrgetter(f"vcpu.{name}"),
                    lambda dom, value: setattr(dom.vcpu, name, value),
                    doc=doc)


class VCpu:
    """One virtual CPU of a domain: its registers, by name, for its width, and the
    state Xen keeps per vCPU (xen/include/xen/sched.h, struct vcpu; arch.pv).

    Every VCpu reads and writes the one emulated CPU: only the vCPU on it (the
    domain's `vcpu`) may use get/set. The others wait in CONTEXT, a saved CPU state
    (hv/scheduler.py switches them), or, not yet run since VCPUOP_initialise, in
    START_STATE, which loads the registers the guest gave. INFO is the physical address of its
    vcpu_info: shared_info.vcpu_info[ID] until VCPUOP_register_vcpu_info moves it."""

    def __init__(self, cpu: Cpu, memory: GuestMemory, vcpu_id: int = 0):
        self._cpu = cpu
        self._width = width = cpu.width
        # The guest's width, 32 or 64, which lays out its hypercall structures: read by
        # the page-table hypercalls on every call, so a plain attribute.
        self.bits = width.bits
        self._rings = RingSwitch(cpu, memory, layout.RING_SWITCH)
        self._number = width.gprs[HYPERCALL_NUMBER_REGISTER[width.bits]]
        arguments = tuple(width.gprs[name] for name in HYPERCALL_ARGUMENT_REGISTERS[width.bits])
        # The hypercall's hot path, bound once so that a call costs no frame of its
        # own: hypercall_registers() gives (CS, the number, the arguments...) and
        # set_result(value) writes the result register, both in the CPU's state in
        # place (machine/cpu_state.py), with no call into Unicorn.
        self.hypercall_registers = cpu.reader((CS, self._number, *arguments))
        self.set_result = cpu.writer(self._number)
        self.long_mode = Vcpu64() if width.bits == 64 else None  # hv/vcpu64.py
        self.id = vcpu_id
        self._memory = memory
        self.info = layout.VCPU0 + vcpu_id * VCPU_INFO.size
        self.info_registered = False  # VCPUOP_register_vcpu_info, allowed once
        # vCPU 0 is built running; the others are down until VCPUOP_initialise and up.
        self.initialised = self.up = vcpu_id == 0
        self.blocked = False  # SCHEDOP_block or poll: it waits for an event
        self.polling: frozenset[int] | None = None  # SCHEDOP_poll's ports while it waits
        self.poll_deadline: int | None = None  # ns: when the poll times out
        self.timer_deadline: int | None = None  # ns: the single-shot timer (set_timer_op)
        self.periodic_period = 0  # ns; 0: no periodic timer (a PV vCPU's is 10 ms)
        self.periodic_last = 0  # ns: its last tick (v->periodic_last_event)
        self.periodic_next: int | None = None  # ns: the next tick, while it is armed
        self.runstate = Runstate(RunstateState.running if vcpu_id == 0
                                 else RunstateState.offline,
                                 layout=VCPU_RUNSTATE_INFO_64 if width.bits == 64
                                 else VCPU_RUNSTATE_INFO)
        self.runstate_area: int | None = None  # guest VA (register_runstate_memory_area)
        self.time_area: int | None = None  # guest VA (register_vcpu_time_memory_area)
        self.nmi_pending = False  # VCPUOP_send_nmi, delivered at its next slice
        self.base_mfn = 0  # its page-table base while another vCPU runs (or to start)
        self.context = None  # the saved CPU state while another vCPU runs
        # Puts the registers VCPUOP_initialise gave on the CPU, until its first run.
        self.start_state: Callable[[], None] | None = None
        # Xen's per-vCPU PV state (arch.pv): the trap table, callbacks, kernel stack.
        self.trap_table: dict[int, TrapInfo] = {}
        self.callbacks: dict[int, tuple[int, int, int]] = {}
        self.kernel_ss = self.kernel_sp = 0
        self.iopl = 0  # physdev_op set_iopl: the virtual IOPL
        self.gdt: Gdt | None = None  # its GDT (hv/gdt.py), which the domain gives it
        self.fpu_ts = False  # the virtual CR0.TS (fpu_taskswitch, clts)

    @property
    def info(self) -> int:
        return self._info

    @info.setter
    def info(self, address: int) -> None:
        """Its vcpu_info moves to ADDRESS; where the hypervisor's own memory holds it
        (shared_info's slots), info_view reads it in place: every hypercall's return
        reads evtchn_upcall_pending."""
        self._info = address
        self.info_view = self._memory.host_view(address, VCPU_INFO.size)

    @property
    def runnable(self) -> bool:
        return self.up and not self.blocked

    def unblock(self, now: int) -> None:
        """Xen's vcpu_unblock: a blocked or polling vCPU becomes runnable at NOW (a
        vCPU that is down stays offline until VCPUOP_up)."""
        if self.blocked:
            self.blocked = False
            self.polling = self.poll_deadline = None
            if self.up:
                self.runstate.change(RunstateState.runnable, now)

    def get(self, reg: int) -> int:
        return self._cpu.read(reg)

    def set(self, reg: int, value: int) -> None:
        self._cpu.write(reg, value)

    def load_gdt(self) -> None:
        """The CPU's GDTR onto this vCPU's own GDT: its first run (its saved contexts
        keep the GDTR from then on)."""
        self._cpu.set_descriptor_table(GDTR, self.gdt.address, self.gdt.limit)

    @property
    def cpl(self) -> int:
        return self._cpu.cpl

    @property
    def eip(self) -> int:
        return self._cpu.read(self._width.ip)

    @property
    def esp(self) -> int:
        return self._cpu.read(self._width.sp)

    @property
    def eflags(self) -> int:
        return self._cpu.read(self._width.flags)

    @property
    def cs(self) -> int:
        return self._cpu.read(CS)

    def enter_ring(self, ring: int, *, cs: int, eip: int, ss: int, esp: int,
                   eflags: int) -> None:
        """Continue at CS:EIP on SS:ESP in RING (1 or 3) through the hypervisor's iretd
        trampoline (machine/rings.py). In a domain the ring is CS's RPL: every ring
        change is an iretd loading CS."""
        self._rings.enter(self.cs & 3, ring, cs=cs, eip=eip, ss=ss, esp=esp, eflags=eflags)

    def start(self, *, cs: int, eip: int, ss: int, esp: int, eflags: int) -> None:
        """Begin at CS:EIP on SS:ESP in CS's ring, whichever ring the CPU is in: by way
        of ring 0, so that the trampoline's iretd loads SS:ESP as well (an iretd to
        the same ring would leave ESP on the trampoline's frame)."""
        self._rings.enter(USER_RING, cs & 3, cs=cs, eip=eip, ss=ss, esp=esp, eflags=eflags)


class Domain:
    """A guest kernel the hypervisor runs in ring 1, built whole: its machine frames
    (owned by DOMID), its vCPU with its GDT beside Xen's reserved descriptors, and its page
    tables, validated from BASE_MFN on in PAGING mode (4 MiB pages if SUPERPAGES;
    writable mappings of tables in a base made read-only if DOWNGRADE, else as the mode
    says).
    Trap-and-emulate runs an unmodified kernel as such a domain; a PV kernel gets
    Xen's interface on top (PvDomain)."""

    def __init__(self, machine: Machine, *, base_mfn: int,
                 paging: PagingMode = PagingMode.TWO_LEVEL, glue: bool = False,
                 superpages: bool = False, downgrade: bool | None = None,
                 rules: PagingRules | None = None, console_output: Callable[[bytes], None],
                 trace: Callable[[str], None] | None = None, domid: int = GUEST_DOMID):
        self.machine = machine
        self.memory: GuestMemory = machine.memory
        self.nr_pages = machine.ram_size // PAGE_SIZE
        self.domid = domid
        self.console_output = console_output
        self.trace = trace
        self.frames = machine_frames(self.nr_pages, domid)
        self.vcpus = [VCpu(machine.cpu, machine.memory, 0)]
        self.vcpu = self.vcpus[0]  # the vCPU on the CPU (hv/scheduler.py switches it)
        self.vcpu.gdt = Gdt(self)
        self.pagetables = PageTables(self, base_mfn, paging, glue=glue, superpages=superpages,
                                     downgrade=downgrade, rules=rules)
        # Where a hypercall's buffer may lie, read on every pointer: the guest's ranges
        # and, for a patched kernel, the glue window (its own frames).
        self.buffer_ranges = self.pagetables.rules.guest_ranges + (
            ((layout.GLUE_WINDOW, layout.GLUE_WINDOW + pvabi.GLUE_WINDOW_SIZE),) if glue else ())
        self.glue_alias = 0  # PvDomain: where else its glue is reached (hv/traps.py)

    fpu_ts = running_vcpus("fpu_ts", "The virtual CR0.TS.")
    gdt = running_vcpus("gdt", "The GDT the CPU runs on: the running vCPU's.")

    # -- what the domain owns ------------------------------------------------------
    def is_named_by(self, domid: int) -> bool:
        """Whether DOMID names this domain: DOMID_SELF or its own id. Xen's
        rcu_lock_domain_by_any_id finds no other here: pvtool runs one domain."""
        return domid in (DOMID_SELF, self.domid)

    def owns_frame(self, mfn: int) -> bool:
        """Frames the domain may map, as the frame table says: its own (its RAM, machine
        frame = pseudo-physical frame, docs/ABI.md) and those shared with it (its
        shared_info page)."""
        return self.frames.may_map(self.domid, mfn)

    @property
    def hypervisor_start(self) -> int:
        """Where Xen's range begins: 0xF5800000 on PAE, 0xFC000000 on 2-level,
        0xFFFF800000000000 on 4-level."""
        return self.pagetables.rules.hypervisor_start

    # -- guest memory, checked -----------------------------------------------------
    def copy_from_guest(self, vaddr: int, size: int) -> bytes:
        self.check_guest_range(vaddr, size)
        try:
            return self.memory.read_virt(vaddr, size)
        except PageFault:
            raise HypercallError(Errno.EFAULT, f"unmapped guest address {vaddr:#x}") from None

    def copy_to_guest(self, vaddr: int, data: bytes) -> None:
        self.check_guest_range(vaddr, len(data))
        try:
            self.memory.write_virt(vaddr, data)
        except PageFault:
            raise HypercallError(Errno.EFAULT,
                                 f"guest address {vaddr:#x} is not writable") from None

    def check_guest_range(self, vaddr: int, size: int) -> None:
        """A guest buffer lies in one of buffer_ranges: below the hypervisor's range,
        or inside the glue window (the domain's own frames, mapped there for a patched
        kernel). On every pointer a hypercall reads or writes: the usual answer first."""
        for start, end in self.buffer_ranges:
            if start <= vaddr and vaddr + size <= end and size >= 0:
                return
        if size < 0 or vaddr < 0:
            raise HypercallError(Errno.EFAULT, f"guest buffer {vaddr:#x}+{size:#x}")
        raise HypercallError(Errno.EFAULT,
                             f"guest buffer {vaddr:#x}+{size:#x} reaches the hypervisor")

    # -- events --------------------------------------------------------------------
    # The running vCPU's vcpu_info, wherever it lies.
    @property
    def upcall_mask(self) -> int:
        view = self.vcpu.info_view
        if view is not None:
            return view[UPCALL_MASK]
        return self.memory.read_phys(self.vcpu.info + UPCALL_MASK, 1)[0]

    @upcall_mask.setter
    def upcall_mask(self, value: int) -> None:
        self.memory.write_phys(self.vcpu.info + UPCALL_MASK, bytes((value & 1,)))

    @property
    def upcall_pending(self) -> int:
        view = self.vcpu.info_view
        if view is not None:
            return view[UPCALL_PENDING]
        return self.memory.read_phys(self.vcpu.info + UPCALL_PENDING, 1)[0]

    @upcall_pending.setter
    def upcall_pending(self, value: int) -> None:
        self.memory.write_phys(self.vcpu.info + UPCALL_PENDING, bytes((value & 1,)))

    def set_cr2(self, address: int) -> None:
        self.memory.write_u32(self.vcpu.info + VCPU_INFO.offset("cr2"), address)

    # -- the end of a domain -------------------------------------------------------
    def shutdown(self, reason_code: int, reason: str) -> None:
        self.machine.request_stop(Stop(StopKind.SHUTDOWN, reason, self.vcpu.eip, reason_code))

    def crash(self, reason: str, address: int | None = None) -> None:
        """Xen's domain_crash; ADDRESS is the fault's (DomainCrash.address)."""
        self.machine.request_stop(Stop(StopKind.CRASH, f"domain crashed: {reason}",
                                       self.vcpu.eip, fault_address=address))

    def log(self, message: str) -> None:
        """A --trace line, naming the vCPU when the domain has more than one."""
        if self.trace is not None:
            self.trace(f"vcpu{self.vcpu.id}: {message}" if len(self.vcpus) > 1 else message)


class PvDomain(Domain):
    """A paravirtualized domain: a Domain with Xen's PV interface, the state its
    hypercalls set (trap table, callbacks, kernel stack, I/O privilege, assists), its
    event channels and its console ring (whose frame the hypervisor keeps writable),
    and REGS_BLOCK, a patched kernel's virtual CPU registers (pvtool note)."""

    def __init__(self, machine: Machine, *, console_mfn: int, regs_block: int | None,
                 site_ranges: tuple[tuple[int, int, int], ...] = (), glue_alias: int = 0,
                 console_input: bytes = b"", vcpus: int = 1,
                 xen_console: Callable[[bytes], None], **domain):
        super().__init__(machine, **domain)
        self.vcpus += [VCpu(machine.cpu, machine.memory, i) for i in range(1, vcpus)]
        for vcpu in self.vcpus[1:]:
            vcpu.gdt = Gdt(self, vcpu.id)
        self.xen_console = xen_console  # console_io's output: Xen's console, not the ring
        self.debug_registers = DebugRegisters()  # set_debugreg's (hv/debugreg.py)
        self.breakpoints = None  # what arms them: the supervisor's (hv/breakpoints.py)
        # A patched higher-half kernel's VIRT_BASE: its glue is also reached that far
        # below the glue window while it runs at its physical addresses.
        self.glue_alias = glue_alias
        self.iobitmap = self.iobitmap_ports = 0  # physdev_op set_iobitmap's (hv/ioports.py)
        self.vm_assists: set[int] = set()
        # counted on the hot path; under --profile each count also labels its exit
        self.hypercalls_by_number: Counter[int] = (
            machine.profile.labels(Exit.HYPERCALL, hypercall_name) if machine.profile
            else Counter())
        self.regs_block = regs_block
        self.site_ranges = site_ranges  # a patched kernel's (pvtool note)
        self.last_console_io = b""  # the last console_io write, for glue_failure
        self.pagetables.hold_writable(console_mfn)  # the console backend's ring
        self.console_ring = ConsoleRing(self, console_mfn, CONSOLE_EVTCHN, console_input)
        self.events = EventChannels(self)
        self.scheduler = VcpuScheduler(self)
        self.events.connect(STORE_EVTCHN, None)
        self.events.connect(CONSOLE_EVTCHN, self.console_ring)
        self.grants = GrantTable(self)
        self.console_ring.fill()
        for vcpu in self.vcpus:
            self.memory.write_phys(vcpu.info + UPCALL_MASK, b"\x01")  # events masked
            self.events.update_time(vcpu)
            vcpu.periodic_period = DEFAULT_PERIOD_NS
        self.events.write_wall_clock()

    @property
    def hypercall_counts(self) -> Counter[str]:
        """The hypercalls made, by name (hypercall_N for a number Xen does not have)."""
        return Counter({hypercall_name(number): count
                        for number, count in self.hypercalls_by_number.items()})

    # Xen keeps these per vCPU (v->arch.pv): they are the running vCPU's.
    trap_table = running_vcpus("trap_table", "set_trap_table's, by vector.")
    callbacks = running_vcpus("callbacks", "(cs, eip, flags) by CallbackType.")
    kernel_ss = running_vcpus("kernel_ss", "HYPERVISOR_stack_switch's SS.")
    kernel_sp = running_vcpus("kernel_sp", "HYPERVISOR_stack_switch's ESP.")
    iopl = running_vcpus("iopl", "physdev_op set_iopl's I/O privilege.")

    def kernel_stack(self) -> tuple[int, int]:
        """(SS, ESP) a trap from ring 3 switches to: the TSS the kernel loaded (its
        SS0:ESP0, read afresh, since kernels update ESP0 on every context switch),
        else what it gave HYPERVISOR_stack_switch."""
        tss = self._tss_base()
        if tss:
            try:
                ss0, esp0 = read_tss_stack(self.copy_from_guest, tss)
            except HypercallError:
                raise DomainCrash(f"the TSS at {tss:#x} is not mapped") from None
            ss, sp = fix_selector_rpl(ss0), esp0
        elif not self.kernel_ss:
            raise DomainCrash("a trap from ring 3 with no kernel stack (stack_switch)")
        else:
            ss, sp = self.kernel_ss, self.kernel_sp
        if not self.gdt.is_stack_selector(ss, GUEST_KERNEL_RPL):
            raise DomainCrash(f"a trap from ring 3 onto kernel stack segment {ss:#x}, "
                              "not a ring-1 data segment")
        return ss, sp

    def glue_failure(self) -> Stop | None:
        """A crash for the reason the glue printed just before it asked for one (its
        line on the emergency console, docs/ABI.md), at the original instruction whose
        replacement called it: the innermost return address on the stack that lies in
        a replaced site's code. None when the last console write was not the glue's."""
        line = self.last_console_io.decode("utf-8", "replace").strip()
        if not line.startswith(pvabi.GLUE_FAILURE_PREFIX):
            return None
        return Stop(StopKind.CRASH, line, self._failing_site())

    def _failing_site(self) -> int:
        """The site the stack leads back to, else the vCPU's eip."""
        esp = self.vcpu.esp
        for slot in range(GLUE_FAILURE_STACK_SLOTS):
            try:
                (word,) = struct.unpack("<I", self.copy_from_guest(esp + 4 * slot, 4))
            except HypercallError:
                break
            for start, end, site in self.site_ranges:
                if start < word <= end:  # a call inside the range returns into it
                    return site
        return self.vcpu.eip

    def _tss_base(self) -> int:
        if self.regs_block is None:
            return 0
        field = self.regs_block + pvabi.VCPU_REGS.offset("tss_base")
        return struct.unpack("<I", self.copy_from_guest(field, 4))[0]


def fix_selector_rpl(selector: int) -> int:
    """Selectors with an RPL below the guest kernel's ring get the kernel's RPL
    (Xen's fixup_guest_code_selector)."""
    return selector | GUEST_KERNEL_RPL if selector & 3 < GUEST_KERNEL_RPL else selector
