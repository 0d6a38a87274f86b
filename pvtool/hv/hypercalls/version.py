"""xen_version: every XENVER_* subcommand answered as Xen's do_xen_version does
(xen/common/kernel.c) under the default XSM policy (xen/include/xsm/dummy.h,
xsm_xen_version): version, platform_parameters and get_features for everyone;
extraversion(2), compile_info, capabilities(2), changeset(2), pagesize and guest_handle
for any guest; commandline(2) and build_id for the hardware domain only. A denied
commandline reads as xen_deny(), the empty string of a release build; a denied
build_id or *2 subcommand is -EPERM.

Where pvtool has no fact of its own to give (a compiler, a changeset, a command line,
a build id) it answers as a Xen built outside a source tree with an empty command line:
"unavailable" is XEN_CHANGESET's value then (xen/Makefile), and xen_build_id() gives
-ENODATA without one (xen/common/version.c).
"""

import struct
from collections.abc import Callable

from pvtool.abi import xen
from pvtool.abi.xen import (
    CAPABILITIES_SIZE,
    CHANGESET_SIZE,
    COMMANDLINE_SIZE,
    COMPILE_INFO_SIZES,
    DOMAIN_HANDLE_SIZE,
    HARDWARE_DOMID,
    Errno,
    VmAssistType,
    XenFeature,
    XenVer,
)
from pvtool.hv.domain import PvDomain
from pvtool.hv.errors import HypercallError
from pvtool.x86.paging import PAGE_SIZE

EXTRAVERSION_SIZE = 16  # xen_extraversion_t
CHANGESET = b"unavailable"
COMPILE_INFO = (b"pvtool", b"pvtool", b"", b"")  # compiler, by, domain, date
COMMANDLINE = b""
# The start-info magics pvtool's builder boots (hv/builder.py), space-separated as
# arch_get_xen_caps lists them (xen/arch/x86/setup.c).
CAPABILITIES = b" ".join((xen.START_INFO_MAGIC_32, xen.START_INFO_MAGIC_32P))
# Submap 0 for a PV domain, as do_xen_version builds it, less the bits whose
# mechanism pvtool lacks (vnode memory_op, the runstate and vcpu_time phys areas,
# highmem_assist, gnttab_map_avail_bits): a guest that sees a bit uses it.
PV_FEATURES = 1 << XenFeature.mmu_pt_update_preserve_ad | 1 << XenFeature.direct_mapped
VARBUF_LEN = struct.Struct("<I")  # struct xen_varbuf {uint32_t len; char buf[];}


def xen_version(dom: PvDomain, vcpu, args: tuple[int, ...]) -> int:
    cmd, arg = args[0], args[1]
    answer = SUBCOMMANDS.get(cmd)
    if answer is None:
        raise HypercallError(Errno.ENOSYS, f"xen_version command {cmd}")
    return answer(dom, arg)


def _privileged(dom: PvDomain) -> bool:
    return dom.domid == HARDWARE_DOMID


def _string(text: bytes, size: int) -> bytes:
    """safe_strcpy into a zeroed SIZE-byte buffer: truncated, always NUL-terminated."""
    return text[:size - 1].ljust(size, b"\0")


def _copy(dom: PvDomain, arg: int, data: bytes) -> int:
    dom.copy_to_guest(arg, data)
    return 0


def version(dom: PvDomain, arg: int) -> int:
    major, minor = xen.XEN_VERSION
    return major << 16 | minor


def extraversion(dom: PvDomain, arg: int) -> int:
    return _copy(dom, arg, _string(xen.XEN_EXTRAVERSION, EXTRAVERSION_SIZE))


def compile_info(dom: PvDomain, arg: int) -> int:
    return _copy(dom, arg, b"".join(_string(text, size) for text, size
                                    in zip(COMPILE_INFO, COMPILE_INFO_SIZES, strict=True)))


def capabilities(dom: PvDomain, arg: int) -> int:
    return _copy(dom, arg, _string(CAPABILITIES, CAPABILITIES_SIZE))


def changeset(dom: PvDomain, arg: int) -> int:
    return _copy(dom, arg, _string(CHANGESET, CHANGESET_SIZE))


def platform_parameters(dom: PvDomain, arg: int) -> int:
    """A 32-bit guest's compat_platform_parameters: virt_start is where Xen's range
    begins for it (HYPERVISOR_COMPAT_VIRT_START); a 64-bit guest's is an unsigned long,
    HYPERVISOR_VIRT_START."""
    return _copy(dom, arg, struct.pack("<Q" if dom.vcpu.bits == 64 else "<I",
                                       dom.hypervisor_start))


def get_features(dom: PvDomain, arg: int) -> int:
    """xen_feature_info {submap_idx; submap}: one submap (XENFEAT_NR_SUBMAPS), any
    other index -EINVAL; pae_pgdir_above_4gb while the pae_extended_cr3 assist is on,
    dom0 for the hardware domain."""
    (index,) = struct.unpack("<I", dom.copy_from_guest(arg, 4))
    if index != 0:
        raise HypercallError(Errno.EINVAL, f"feature submap {index}")
    submap = PV_FEATURES
    if VmAssistType.pae_extended_cr3 in dom.vm_assists:
        submap |= 1 << XenFeature.pae_pgdir_above_4gb
    if _privileged(dom):
        submap |= 1 << XenFeature.dom0
    return _copy(dom, arg, struct.pack("<II", index, submap))


def pagesize(dom: PvDomain, arg: int) -> int:
    if arg:
        raise HypercallError(Errno.EINVAL, "pagesize takes a null handle")
    return PAGE_SIZE


def guest_handle(dom: PvDomain, arg: int) -> int:
    """The domain's handle (a toolstack's UUID): pvtool's domain was given none."""
    return _copy(dom, arg, bytes(DOMAIN_HANDLE_SIZE))


def commandline(dom: PvDomain, arg: int) -> int:
    if not _privileged(dom):
        return _copy(dom, arg, b"\0")  # xen_deny() and its NUL
    return _copy(dom, arg, _string(COMMANDLINE, COMMANDLINE_SIZE))


def build_id(dom: PvDomain, arg: int) -> int:
    if not _privileged(dom):
        raise HypercallError(Errno.EPERM, "build_id is the hardware domain's")
    raise HypercallError(Errno.ENODATA, "pvtool has no build id")


def _varbuf(text: bytes, hardware_only: bool = False) -> Callable[[PvDomain, int], int]:
    """A *2 subcommand (xenver_varbuf_op): a null handle asks for the length; else
    xen_varbuf.len must hold the text (-ENOBUFS), copied without its NUL after len;
    the length is returned."""

    def answer(dom: PvDomain, arg: int) -> int:
        if hardware_only and not _privileged(dom):
            raise HypercallError(Errno.EPERM, "the hardware domain's")
        if not arg:
            return len(text)
        (room,) = VARBUF_LEN.unpack(dom.copy_from_guest(arg, VARBUF_LEN.size))
        if len(text) > room:
            raise HypercallError(Errno.ENOBUFS, f"{len(text)} bytes in a {room}-byte buffer")
        dom.copy_to_guest(arg + VARBUF_LEN.size, text)
        return len(text)

    return answer


SUBCOMMANDS: dict[int, Callable[[PvDomain, int], int]] = {
    XenVer.version: version,
    XenVer.extraversion: extraversion,
    XenVer.compile_info: compile_info,
    XenVer.capabilities: capabilities,
    XenVer.changeset: changeset,
    XenVer.platform_parameters: platform_parameters,
    XenVer.get_features: get_features,
    XenVer.pagesize: pagesize,
    XenVer.guest_handle: guest_handle,
    XenVer.commandline: commandline,
    XenVer.build_id: build_id,
    XenVer.extraversion2: _varbuf(xen.XEN_EXTRAVERSION),
    XenVer.capabilities2: _varbuf(CAPABILITIES),
    XenVer.changeset2: _varbuf(CHANGESET),
    XenVer.commandline2: _varbuf(COMMANDLINE, hardware_only=True),
}
