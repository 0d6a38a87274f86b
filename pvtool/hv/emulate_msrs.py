"""rdmsr and wrmsr of a 32-bit PV kernel as Xen 4.19 answers them on the #GP a ring-1
rdmsr/wrmsr raises: guest_rdmsr/guest_wrmsr (xen/arch/x86/msr.c), then read_msr and
write_msr (xen/arch/x86/pv/emul-priv-op.c). Since Xen 4.15 an MSR neither handles is
#GP(0) (unless the toolstack's msr_relaxed, which pvtool's domain does not have).

The "host" is the virtual PC whose CPUID pvtool shows (hv/emulate.py CPUID_LEAVES: a
GenuineIntel family 6 CPU with neither NX nor long mode, no PDCM, no IBRS, and
RDTSCP, which Unicorn's CPU runs): its MSRs read as 0 where Xen would pass the host's
value through, and it has no CPUID faulting, so MSR_INTEL_PLATFORM_INFO offers none
and MISC_FEATURES_ENABLES takes only 0 (msr.c: a PV domain's policy is the host's).

A patched kernel (pvtool's notes: a regs block or trap sites) keeps pvtool's contract
for a kernel written for a PC (hv/emulate.py read_msr): this module is Xen's answer to a
kernel written for Xen.
"""

from collections.abc import Callable, Container

from pvtool.abi.xen import hypercall_page_32
from pvtool.hv.domain import PvDomain
from pvtool.x86 import msrs
from pvtool.x86.paging import PAGE_SIZE
from pvtool.x86.vectors import Vector


class GeneralProtection(Exception):
    """The instruction raises #GP(0) in the guest, as Xen injects it."""


MSR_IA32_TSC = 0x10
MSR_IA32_PLATFORM_ID = 0x17
MSR_APIC_BASE = 0x1B
MSR_IA32_UCODE_REV = 0x8B
MSR_INTEL_PLATFORM_INFO = 0xCE
MSR_IA32_MPERF, MSR_IA32_APERF = 0xE7, 0xE8
MSR_INTEL_MISC_FEATURES_ENABLES = 0x140
MSR_IA32_THERM_CONTROL = 0x19A
MSR_IA32_MISC_ENABLE = 0x1A0
MSR_IA32_ENERGY_PERF_BIAS = 0x1B0
MSR_IA32_CR_PAT = 0x277
XEN_MSR_BASE = 0x4000_0000  # Xen's leaves and MSRs (CPUID 0x40000002: the page MSR)
XEN_MSR_LAST = 0x4000_02FF

# read_msr: the local APIC enabled at its default base, BSP on vCPU 0.
APIC_BASE = 0xFEE0_0000 | 1 << 11 | 1 << 8
# guest_misc_enable: perfmon and MONITOR hidden; BTS, PEBS unavailable; xTPR disabled.
MISC_ENABLE = 1 << 11 | 1 << 12 | 1 << 23
# XEN_MSR_PAT (asm/processor.h): WB, WT, UC-, UC, WC, WP, UC, UC.
XEN_MSR_PAT = 0x0501_0007_0406
# guest_efer for a 32-bit PV guest: LME and LMA (and SCE on Intel) hidden, and this
# host has no NX: nothing left.
GUEST_EFER = 0

Reader = Callable[[PvDomain], int]

READS: dict[int, Reader] = {
    MSR_IA32_TSC: lambda dom: dom.machine.clock.insns,  # the TSC of vcpu_info.time
    MSR_IA32_PLATFORM_ID: lambda dom: 0,
    MSR_APIC_BASE: lambda dom: APIC_BASE,
    MSR_IA32_UCODE_REV: lambda dom: 0,
    MSR_INTEL_PLATFORM_INFO: lambda dom: 0,  # no CPUID faulting
    MSR_INTEL_MISC_FEATURES_ENABLES: lambda dom: 0,
    MSR_IA32_MISC_ENABLE: lambda dom: MISC_ENABLE,
    MSR_IA32_CR_PAT: lambda dom: XEN_MSR_PAT,
    msrs.IA32_EFER: lambda dom: GUEST_EFER,
    # guest_rdmsr: the vCPU's msrs->tsc_aux, which `rdtscp` gives in ECX (the policy
    # has RDTSCP; Xen loads it into the CPU at each switch, paravirt_ctxt_switch_to)
    msrs.TSC_AUX: lambda dom: dom.machine.tsc_aux,
}

# MSR -> the values a write may have (None: any, ignored); a write of another value
# is #GP, but for MISC_ENABLE, whose "invalid" write Xen ignores.
WRITES: dict[int, frozenset[int] | None] = {
    MSR_IA32_UCODE_REV: frozenset({0}),  # Intel's "write 0, CPUID, read" sequence
    MSR_INTEL_MISC_FEATURES_ENABLES: frozenset({0}),
    msrs.IA32_EFER: frozenset({GUEST_EFER}),  # Linux writes back what it read
    MSR_IA32_MISC_ENABLE: None,
    MSR_IA32_THERM_CONTROL: None,  # not the hardware domain's pinned vCPU: ignored
    MSR_IA32_ENERGY_PERF_BIAS: None,
    MSR_IA32_MPERF: None,  # not the cpufreq controller: ignored
    MSR_IA32_APERF: None,
}


def read(dom: PvDomain, msr: int, trap_table: Container[int] | None = None) -> int:
    """The value of MSR, or GeneralProtection. A kernel with no #GP handler in its trap
    table (TRAP_TABLE, by default the 32-bit domain's) reads 0 from an MSR outside
    Xen's range instead ("faking RDMSR", read_msr's done: label), so an early probe
    does not kill it."""
    reader = READS.get(msr)
    if reader is not None:
        return reader(dom)
    vectors = dom.trap_table if trap_table is None else trap_table
    if Vector.GP not in vectors and msr >> 16 != XEN_MSR_BASE >> 16:
        return 0
    raise GeneralProtection(f"rdmsr {msr:#x}")


def write(dom: PvDomain, msr: int, value: int,
          hypercall_page: Callable[[], bytes] = hypercall_page_32) -> None:
    """Write MSR, or GeneralProtection. HYPERCALL_PAGE makes the page of the guest's
    width (abi/xen.py)."""
    if msr == XEN_MSR_BASE:
        _write_hypercall_page(dom, value, hypercall_page)
        return
    if msr == msrs.TSC_AUX:
        _write_tsc_aux(dom, value)
        return
    if msr not in WRITES:
        raise GeneralProtection(f"wrmsr {msr:#x}")
    allowed = WRITES[msr]
    if allowed is not None and value not in allowed:
        raise GeneralProtection(f"wrmsr {msr:#x} with {value:#x}")


def _write_hypercall_page(dom: PvDomain, value: int,
                          hypercall_page: Callable[[], bytes]) -> None:
    """guest_wrmsr_xen, index 0: the frame in bits 12 up gets the hypercall page; a
    page index (bits 0-11) other than 0, or a frame the guest may not write (not its
    RAM, or a page table), is #GP."""
    frame, index = value >> 12, value & (PAGE_SIZE - 1)
    if index or frame >= dom.nr_pages or not dom.owns_frame(frame) \
            or frame in dom.pagetables.typed:
        raise GeneralProtection(f"hypercall page at {value:#x}")
    dom.memory.write_phys(frame * PAGE_SIZE, hypercall_page())


def _write_tsc_aux(dom: PvDomain, value: int) -> None:
    """guest_wrmsr: TSC_AUX takes any 32-bit value (#GP for more), then `rdtscp`
    returns it in ECX."""
    if value >> 32:
        raise GeneralProtection(f"wrmsr TSC_AUX with {value:#x}")
    dom.machine.tsc_aux = value
