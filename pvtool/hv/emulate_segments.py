"""The emulated instructions that load the stack segment or leave for ring 3: pop ss
and mov ss, and the fast system-call returns sysexit and sysret (handlers of the
tables in hv/emulate.py).

A kernel written for ring 0 runs in ring 1 under PV, so each of them needs the
hypervisor: loading its RPL-0 stack selector in ring 1 is a #GP (RPL != CPL), and
sysexit and sysret are ring-0 instructions. Each follows the CPU's rules with the
kernel's ring in place of ring 0.
"""

import struct
from typing import TYPE_CHECKING

from pvtool.abi.xen import GUEST_KERNEL_RPL
from pvtool.hv.domain import Domain, fix_selector_rpl
from pvtool.hv.errors import DomainCrash, NotEmulated
from pvtool.machine.cpu import ECX, EDX, ESP, SS
from pvtool.x86 import msrs
from pvtool.x86.registers import EFLAGS_IF

if TYPE_CHECKING:
    from pvtool.hv.emulate import Emulator

# What sysexit and sysret give back to the emulator: they entered ring 3 themselves
# (VCpu.enter_ring decided where the CPU goes next), so EIP must be left alone.
RING_ENTERED = object()
USER_RPL = msrs.FAST_RETURN_RPL


def load_ss(domain: Domain, selector: int) -> None:
    """The kernel's RPL-0 stack selector names a descriptor set_gdt raised to ring 1:
    load it with the kernel's RPL, as Xen's fixup_guest_stack_selector does. The
    virtual IF and the trap table stay as they were."""
    selector = fix_selector_rpl(selector & 0xFFFF)
    if not domain.gdt.is_stack_selector(selector, GUEST_KERNEL_RPL):
        raise DomainCrash(f"ss {selector:#x}: not a kernel stack segment")
    domain.vcpu.set(SS, selector)


def mov_to_ss(em: "Emulator", insn) -> None:
    load_ss(em.domain, em.source16(insn))


def pop_ss(em: "Emulator", insn) -> None:
    """SDM Vol. 2, POP: SS from the top of the stack (a 32-bit slot), then ESP += 4."""
    vcpu = em.domain.vcpu
    esp = vcpu.esp
    (selector,) = struct.unpack("<I", em.read(esp, 4))
    load_ss(em.domain, selector)
    vcpu.set(ESP, esp + 4)


def sysexit(em: "Emulator", insn) -> object:
    """SDM Vol. 2, SYSEXIT: to ring 3 at EDX on the stack ECX, with CS =
    IA32_SYSENTER_CS + 16 and SS = + 24, both RPL 3; EFLAGS, and so the virtual IF,
    unchanged. A null IA32_SYSENTER_CS (as the kernel wrote it with wrmsr) is #GP(0)."""
    base = em.msrs.get(msrs.IA32_SYSENTER_CS, 0) & 0xFFFF
    if not base & ~3:
        raise NotEmulated("IA32_SYSENTER_CS is null: sysexit raises #GP(0)")
    vcpu = em.domain.vcpu
    return _enter_user(em, "sysexit", cs=base + msrs.SYSEXIT_CS_OFFSET | USER_RPL,
                       ss=base + msrs.SYSEXIT_SS_OFFSET | USER_RPL, eip=vcpu.get(EDX),
                       esp=vcpu.get(ECX), eflags=vcpu.eflags)


def sysret(em: "Emulator", insn) -> object:
    """SYSRET in 32-bit legacy mode, where AMD CPUs have it (AMD APM Vol. 3, SYSRET;
    Intel's raise #UD outside 64-bit mode): to ring 3 at ECX, ESP unchanged, with CS =
    STAR[63:48] and SS = STAR[63:48] + 8, both RPL 3, and IF set, which under PV is the
    virtual IF. EFER.SCE clear (as the kernel wrote it with wrmsr) is #UD."""
    if not em.msrs.get(msrs.IA32_EFER, 0) & msrs.EFER_SCE:
        raise NotEmulated("EFER.SCE is clear: sysret raises #UD")
    base = em.msrs.get(msrs.STAR, 0) >> msrs.STAR_SYSRET_CS_SHIFT & 0xFFFF
    vcpu = em.domain.vcpu
    target = _enter_user(em, "sysret", cs=base | USER_RPL,
                         ss=base + msrs.SS_AFTER_CS | USER_RPL, eip=vcpu.get(ECX),
                         esp=vcpu.esp, eflags=vcpu.eflags | EFLAGS_IF)
    em.domain.upcall_mask = 0
    return target


def _enter_user(em: "Emulator", what: str, *, cs: int, ss: int, eip: int, esp: int,
                eflags: int) -> object:
    """Go on in ring 3. The CPU loads flat segment caches without reading the GDT;
    the hypervisor checks the selectors as HYPERVISOR_iret checks a return to ring 3,
    since one the real GDT does not hold as a ring-3 segment would fault inside its
    trampoline."""
    gdt = em.domain.gdt
    if not gdt.is_code_selector(cs, USER_RPL):
        raise DomainCrash(f"{what} to cs {cs:#x}, not a ring-3 code segment")
    if not gdt.is_stack_selector(ss, USER_RPL):
        raise DomainCrash(f"{what} with ss {ss:#x}, not a ring-3 data segment")
    em.domain.vcpu.enter_ring(USER_RPL, cs=cs, eip=eip, ss=ss, esp=esp, eflags=eflags)
    return RING_ENTERED
