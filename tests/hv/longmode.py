"""A small 64-bit PV domain for the entry and exit paths' tests: a Machine(bits=64) at
CPL 3 with 4-level tables (XEN-ABI64.md Part 2), a kernel L4 and a user L4, Xen's
flat selectors, and the hypervisor's side of a domain reduced to what hv/entry64.py
and its hypercalls use (guest copies checked through the page walker, vcpu_info's
mask and CR2, a crash as a stop). Guest code is assembled with keystone into the
kernel's and the user's pages, and runs through the real hooks and supervisor.

Physical layout, identity-mapped: page tables at 0x1000-0x7000; vcpu_info in the
hypervisor's shared_info page (hv/layout.py);
the hypercall page at 0xA000; user code at 0x100000 (both L4s map 0-2 MiB, U=1); the
kernel at 0x200000 and its stack below 0x3F0000 (only the kernel L4 maps 2-4 MiB); the
GDT and the iretq trampoline at 0x400000 (both map 4-6 MiB, U=0).
"""

import struct
from collections import Counter

from pvtool.abi.xen import Errno
from pvtool.abi.xen64 import FLAT_KERNEL_CS64, FLAT_KERNEL_SS64, FLAT_RING3_CS32, hypercall_page_64
from pvtool.hv import layout
from pvtool.hv.debugreg import DebugRegisters
from pvtool.hv.domain import Domain, VCpu
from pvtool.hv.entry64 import Pv64Supervisor
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.hv.vcpu64 import in_hypervisor_range
from pvtool.machine.cpu import CR0, CR3, CR4, CS, GDTR, RFLAGS, RIP, RSP, SS
from pvtool.machine.memory import PageFault
from pvtool.machine.pc import Machine
from pvtool.x86.isa import assemble
from pvtool.x86.paging import is_canonical
from pvtool.x86.registers import CR4_FSGSBASE, CR4_PAE

KERNEL_L4, USER_L4 = 0x1000, 0x4000
VCPU_INFO = layout.VCPU0  # vcpu_info of vCPU 0, in the hypervisor's shared_info page
HYPERCALL_PAGE = 0xA000
USER_CODE = 0x100000
USER_STACK = 0x180000
KERNEL_CODE = 0x200000
KERNEL_STACK = 0x3F0000
GDT = 0x400000
TRAMPOLINE = 0x410000
RAM = 8 << 20
P, RW, US, PS = 1, 2, 4, 0x80
EFER_MSR = 0xC000_0080
EFER_SCE_LME_LMA_NXE = 0xD01


class Events:
    """The event channels as the supervisor sees them: is an event waiting."""

    polling = None

    def __init__(self):
        self.pending = False

    def fire_due_timer(self) -> None:
        pass

    def work_pending(self) -> bool:
        return self.pending

    def update_time(self) -> None:
        pass

    def insns_to_timer(self) -> None:
        return None


class PageTables:
    """The kernel's and the user's L4, unvalidated: the tests' tables are the
    harness's own (hv/pagetables.py validates a real domain's)."""

    def __init__(self, machine: Machine):
        self.machine = machine
        self.base_mfn = KERNEL_L4 >> 12
        self.user_base_mfn = USER_L4 >> 12

    def new_baseptr(self, mfn: int) -> None:
        self.base_mfn = mfn
        self.machine.cpu.write(CR3, mfn << 12)

    def load_cr3(self, *, user: bool) -> None:
        mfn = self.user_base_mfn if user else self.base_mfn
        if not mfn:
            raise DomainCrash("Guest switching to user mode with no user page tables")
        self.machine.cpu.write(CR3, mfn << 12)

    def in_use(self, mfn: int) -> bool:
        """No frame is a validated page table here: a kernel store into a read-only
        page is the guest's #PF (hv/ptwr.py)."""
        return False

    def give_back_write_access(self, entry_addr: int) -> bool:
        return False


class NoGuestGdt:
    """The harness's domain has no guest descriptors (hv/gdt.py keeps a real domain's):
    HYPERVISOR_iret finds no user code segment of the guest's in it."""

    def is_user_code64(self, selector: int) -> bool:
        return False


class LongModeDomain:
    regs_block: int | None = None  # a patched kernel's vcpu_regs (abi/pvtool.py): none

    def __init__(self, trace: bool = False):
        self.machine = machine = Machine(ram_size=RAM, output=lambda data: None, bits=64)
        self.memory = machine.memory
        self.vcpu = VCpu(machine.cpu, machine.memory)
        self.vcpus = [self.vcpu]
        self.debug_registers = DebugRegisters()  # set_debugreg's (hv/debugreg.py)
        self.events = Events()
        self.pagetables = PageTables(machine)
        self.vm_assists: set[int] = set()
        self.iopl = 0
        self.gdt = NoGuestGdt()
        self.trap_table: dict = {}
        self.hypercalls_by_number: Counter = Counter()
        self.lines: list[str] = []
        self.trace = self.lines.append if trace else None
        machine.map_memory(layout.BASE, layout.MEMORY_SIZE)  # shared_info is there
        _build_tables(machine)
        machine.memory.keep_translations()  # as a PV domain's: its tables never change
        machine.memory.write_phys(HYPERCALL_PAGE, hypercall_page_64())
        self.upcall_mask = 1
        self.supervisor = Pv64Supervisor(self)
        machine.attach(self.supervisor)

    # -- what the hypervisor's code asks of a domain ----------------------------------
    def copy_from_guest(self, vaddr: int, size: int) -> bytes:
        self._check(vaddr, size)
        try:
            return self.memory.read_virt(vaddr, size, user=True)
        except PageFault:
            raise HypercallError(Errno.EFAULT, f"unmapped {vaddr:#x}") from None

    def copy_to_guest(self, vaddr: int, data: bytes) -> None:
        self._check(vaddr, len(data))
        try:
            self.memory.write_virt(vaddr, data, user=True)
        except PageFault:
            raise HypercallError(Errno.EFAULT, f"unwritable {vaddr:#x}") from None

    def _check(self, vaddr: int, size: int) -> None:
        if not is_canonical(vaddr) or in_hypervisor_range(vaddr, size):
            raise HypercallError(Errno.EFAULT, f"guest buffer {vaddr:#x}")

    upcall_mask = Domain.upcall_mask  # in vcpu_info, hypervisor memory
    upcall_pending = Domain.upcall_pending

    crash = Domain.crash  # a stop with the reason, as every domain's
    log = Domain.log

    # -- running guest code -------------------------------------------------------------
    def load(self, address: int, source: str) -> dict[str, int]:
        """Assemble SOURCE (Intel syntax) at ADDRESS; the labels' addresses."""
        code = assemble(source, address, 64)
        self.memory.write_phys(address, code)
        return {}

    def enter(self, rip: int, rsp: int, *, cs: int = FLAT_KERNEL_CS64) -> None:
        """Start at RIP on RSP at CPL 3 through an iretq at CPL 0 (§2.1)."""
        cpu = self.machine.cpu
        frame = struct.pack("<5Q", rip, cs, 0x202, rsp, FLAT_KERNEL_SS64)
        self.memory.write_phys(TRAMPOLINE + 0x100, frame)
        cpu.write(RSP, TRAMPOLINE + 0x100)
        self.machine.uc.emu_start(TRAMPOLINE, 0, 0, 1)

    def run(self, until: int, count: int = 10_000) -> None:
        """Run from the current RIP until UNTIL (or COUNT instructions, or a stop)."""
        cpu = self.machine.cpu
        self.machine.uc.emu_start(cpu.read(RIP), until, 0, count)
        self.machine.finish_slice()  # a hook's error raised, a refused port's #GP made

    def enter_user(self, rip: int, rsp: int = USER_STACK, cs: int = FLAT_KERNEL_CS64) -> None:
        """Start a user program: user mode, the user L4 (as HYPERVISOR_iret leaves it)."""
        self.vcpu.long_mode.toggle(self.machine.cpu, self.pagetables.load_cr3)
        self.enter(rip, rsp, cs=cs)

    def u64(self, address: int) -> int:
        return struct.unpack("<Q", self.memory.read_phys(address, 8))[0]

    def qwords(self, address: int, count: int) -> tuple[int, ...]:
        return struct.unpack(f"<{count}Q", self.memory.read_phys(address, 8 * count))


def ready_domain() -> LongModeDomain:
    """A domain whose kernel takes events (upcall mask clear) and has a kernel stack
    for bounces from user mode, tracing."""
    domain = LongModeDomain(trace=True)
    domain.upcall_mask = 0
    domain.vcpu.long_mode.kernel_sp = KERNEL_STACK
    return domain


def _build_tables(machine: Machine) -> None:
    """Both L4s, the GDT with Xen's flat selectors, the trampoline, paging on."""
    write = machine.memory.write_phys
    kernel_l3, kernel_l2, user_l3, user_l2 = 0x2000, 0x3000, 0x5000, 0x6000
    write(KERNEL_L4, struct.pack("<Q", kernel_l3 | P | RW | US))
    write(kernel_l3, struct.pack("<Q", kernel_l2 | P | RW | US))
    write(kernel_l2, struct.pack("<3Q", 0 | P | RW | US | PS, 0x200000 | P | RW | US | PS,
                                 0x400000 | P | RW | PS))
    write(USER_L4, struct.pack("<Q", user_l3 | P | RW | US))
    write(user_l3, struct.pack("<Q", user_l2 | P | RW | US))
    write(user_l2, struct.pack("<3Q", 0 | P | RW | US | PS, 0,
                               0x400000 | P | RW | PS))
    flat = 0x00AF00000000FFFF  # 64-bit code: L set; data ignores it
    descriptors = {0xE008: flat | 0x9B << 40, 0xE010: 0x00CF93000000FFFF,
                   FLAT_RING3_CS32: 0x00CFFB000000FFFF, FLAT_KERNEL_SS64: 0x00CFF3000000FFFF,
                   FLAT_KERNEL_CS64: flat | 0xFB << 40}
    for selector, descriptor in descriptors.items():
        write(GDT + (selector & ~7), struct.pack("<Q", descriptor))
    write(TRAMPOLINE, b"\x48\xcf")  # iretq
    cpu = machine.cpu
    cpu.set_descriptor_table(GDTR, GDT, 0xE037)
    cpu.write(CS, 0xE008)
    cpu.write(SS, 0xE010)
    cpu.write(CR3, KERNEL_L4)
    cpu.write(CR4, cpu.read(CR4) & ~CR4_FSGSBASE | CR4_PAE)  # as the builder leaves it
    machine.uc.msr_write(EFER_MSR, EFER_SCE_LME_LMA_NXE)
    cpu.write(CR0, cpu.read(CR0) | 1 << 31 | 1 << 16 | 1)
    cpu.write(RFLAGS, 0x2)
