"""Small hypercalls about the domain itself: assists, I/O privilege, FPU."""

from pvtool.abi.layouts import PHYSDEV_SET_IOBITMAP, PHYSDEV_SET_IOPL
from pvtool.abi.xen import Errno, PhysdevOp, VmAssist, VmAssistType
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError
from pvtool.hv.ioports import set_iobitmap

KNOWN_ASSISTS = frozenset(VmAssistType)


def vm_assist(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    cmd, kind = args[0], args[1]
    if kind not in KNOWN_ASSISTS:
        raise HypercallError(Errno.EINVAL, f"vm_assist type {kind}")
    if cmd == VmAssist.enable:
        dom.vm_assists.add(kind)
    elif cmd == VmAssist.disable:
        dom.vm_assists.discard(kind)
    else:
        raise HypercallError(Errno.EINVAL, f"vm_assist command {cmd}")
    return 0


def physdev_op(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    cmd, arg = args[0], args[1]
    if cmd == PhysdevOp.set_iopl:
        iopl = PHYSDEV_SET_IOPL.unpack(dom.copy_from_guest(arg, PHYSDEV_SET_IOPL.size))["iopl"]
        if iopl > 3:
            raise HypercallError(Errno.EINVAL, f"iopl {iopl}")
        dom.iopl = iopl
        return 0
    if cmd == PhysdevOp.set_iobitmap:
        set_iobitmap(dom, dom.copy_from_guest(arg, PHYSDEV_SET_IOBITMAP.size))
        return 0
    raise HypercallError(Errno.ENOSYS, f"physdev_op command {cmd}")


def fpu_taskswitch(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """Set (1) or clear (0) the virtual CR0.TS; Unicorn's FPU is always the guest's."""
    dom.fpu_ts = bool(args[0])
    return 0
