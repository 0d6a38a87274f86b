"""Small hypercalls about the domain itself: version, assists, I/O privilege, FPU."""

import struct

from pvtool.abi import xen
from pvtool.abi.layouts import PHYSDEV_SET_IOPL
from pvtool.abi.xen import Errno, PhysdevOp, VmAssist, VmAssistType, XenVer
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError
from pvtool.x86.paging import PAGE_SIZE

EXTRAVERSION_SIZE = 16
KNOWN_ASSISTS = frozenset(VmAssistType)


def xen_version(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    cmd, arg = args[0], args[1]
    if cmd == XenVer.version:
        major, minor = xen.XEN_VERSION
        return major << 16 | minor
    if cmd == XenVer.extraversion:
        dom.copy_to_guest(arg, xen.XEN_EXTRAVERSION.ljust(EXTRAVERSION_SIZE, b"\0"))
        return 0
    if cmd == XenVer.pagesize:
        return PAGE_SIZE
    if cmd == XenVer.get_features:
        # struct xen_feature_info {submap_idx; submap}: Xen reads the index the guest
        # asks for and has one submap (index 0) on x86; pvtool offers no feature there.
        (index,) = struct.unpack("<I", dom.copy_from_guest(arg, 4))
        if index != 0:
            raise HypercallError(Errno.EINVAL, f"feature submap {index}")
        dom.copy_to_guest(arg, struct.pack("<II", index, 0))
        return 0
    raise HypercallError(Errno.ENOSYS, f"xen_version command {cmd}")


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
    raise HypercallError(Errno.ENOSYS, f"physdev_op command {cmd}")


def fpu_taskswitch(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    """Set (1) or clear (0) the virtual CR0.TS; Unicorn's FPU is always the guest's."""
    dom.fpu_ts = bool(args[0])
    return 0
