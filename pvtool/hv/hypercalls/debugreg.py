"""HYPERVISOR_set_debugreg(reg, value) and HYPERVISOR_get_debugreg(reg): the vCPU's
debug registers through hv/debugreg.py, with Xen's checks (misc-hypercalls.c). A PV
domain's CR4.DE is clear (Xen's initial guest CR4), so DR4/DR5 alias DR6/DR7."""

from pvtool.hv.domain import PvDomain, VCpu


def set_debugreg(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    dom.debug_registers.write(args[0], args[1])
    return 0


def get_debugreg(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    return dom.debug_registers.read(args[0])
