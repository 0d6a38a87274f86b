"""The state Xen keeps for a 64-bit PV vCPU beside its registers (XEN-ABI64.md §1.1).

A 64-bit guest kernel runs at CPL 3 beside its own user programs, so which of the two
is running is the hypervisor's flag (Xen's TF_kernel_mode), not the CPU's. Going from
one to the other (toggle_guest_mode) swaps the GS bases, as Xen's swapgs does, and
loads CR3 from the new mode's top-level table, which the page tables keep: the kernel
L4 (NEW_BASEPTR, or an emulated mov to CR3) or the user L4 (NEW_USER_BASEPTR). The
CPU holds the active GS base; the inactive one is kept here, so the guest never needs
swapgs (which faults at CPL 3, §1.7) and a toggle costs two register writes and a CR3
load.

The trap table, the callbacks and the kernel stack of a 64-bit vCPU are kept here too:
their layouts and rules are the 64-bit ABI's (§1.5), not the 32-bit domain's.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from pvtool.abi.xen import CallbackType
from pvtool.abi.xen64 import HYPERVISOR_VIRT_END_64, HYPERVISOR_VIRT_START_64
from pvtool.machine.cpu import GS_BASE, Cpu


def in_hypervisor_range(address: int, size: int = 1) -> bool:
    """Whether [ADDRESS, ADDRESS+SIZE) touches Xen's L4 slots 256-271 (§1.8)."""
    return address < HYPERVISOR_VIRT_END_64 and address + size > HYPERVISOR_VIRT_START_64


@dataclass(frozen=True)
class TrapInfo64:
    """One entry of a 64-bit trap table (trap_info, §1.5)."""

    vector: int
    dpl: int  # who may raise it with `int n`: 0 nobody, 1-2 the kernel, 3 everyone
    masks_events: bool
    address: int


@dataclass(frozen=True)
class Callback64:
    """A registered entry point (callback_op, set_callbacks, §1.5)."""

    address: int
    masks_events: bool


@dataclass
class Vcpu64:
    """A 64-bit PV vCPU's mode, GS bases, top-level tables, trap table, callbacks and
    kernel stack. The builder starts it in kernel mode with no user table (§1.1)."""

    kernel_mode: bool = True
    inactive_gs_base: int = 0  # the other mode's GS base (Xen's gs_base_user in kernel mode)
    kernel_sp: int = 0  # stack_switch's: where a bounce from user mode starts
    user_base_mfn: int = 0  # its user L4 while another vCPU runs (hv/scheduler.py)
    fsgsbase: bool = False  # vCR4.FSGSBASE: rd/wr{fs,gs}base raise #UD while clear
    resume: int | None = None  # where HYPERVISOR_iret or a bounce sends the guest next
    trap_table: dict[int, TrapInfo64] = field(default_factory=dict)
    callbacks: dict[CallbackType, Callback64] = field(default_factory=dict)

    def gs_base_user(self, cpu: Cpu) -> int:
        """The user's GS base: the inactive one in kernel mode, else the CPU's."""
        return self.inactive_gs_base if self.kernel_mode else cpu.read(GS_BASE)

    def set_gs_base_user(self, cpu: Cpu, base: int) -> None:
        if self.kernel_mode:
            self.inactive_gs_base = base
        else:
            cpu.write(GS_BASE, base)

    def toggle(self, cpu: Cpu, load_cr3: Callable[..., None]) -> None:
        """Xen's toggle_guest_mode: load the new mode's L4 (LOAD_CR3, the page
        tables': into user mode with no user L4 it crashes the domain, as Xen's
        do_iret does), swap the GS bases, flip the mode."""
        load_cr3(user=self.kernel_mode)
        active = cpu.read(GS_BASE)
        cpu.write(GS_BASE, self.inactive_gs_base)
        self.inactive_gs_base = active
        self.kernel_mode = not self.kernel_mode
