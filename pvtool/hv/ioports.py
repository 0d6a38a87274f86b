"""Xen's I/O privilege for a 32-bit PV guest: who may touch which port.

Unicorn never checks I/O privilege (shared/UNICORN.md): every in/out reaches the
machine's port hook, which asks the supervisor. Xen answers as
xen/arch/x86/pv/emul-priv-op.c does: `iopl_ok()` first (the virtual IOPL of
physdev_op set_iopl against the vCPU's ring, the kernel counting as ring 1, or as
ring 0 under VMASST_TYPE_architectural_iopl), then `guest_io_okay()`'s I/O bitmap
(physdev_op set_iobitmap): ports below its nr_ports whose bits are clear are allowed,
bits it cannot read count as set. Anything else is #GP(0) in the guest, which its
kernel handles; the domain is not crashed.
"""

from pvtool.abi.layouts import PHYSDEV_SET_IOBITMAP
from pvtool.abi.xen import GUEST_KERNEL_RPL, IO_PORTS, IOBMP_BYTES, Errno, VmAssistType
from pvtool.hv.errors import HypercallError

USER_RPL = 3
NO_ACCESS = 0xFF  # what an unreadable byte of the bitmap counts as


def iopl_ok(dom, cpl: int) -> bool:
    """emul-priv-op.c's iopl_ok(): ring 3 is ring 3; the kernel's ring counts as 1, or
    as 0 under VMASST_TYPE_architectural_iopl."""
    if cpl != USER_RPL:
        cpl = 0 if VmAssistType.architectural_iopl in dom.vm_assists else GUEST_KERNEL_RPL
    return cpl <= dom.iopl


def io_okay(dom, port: int, size: int, cpl: int) -> bool:
    """guest_io_okay(): the virtual IOPL allows it, or the bitmap's bits for the SIZE
    ports from PORT are clear and all of them lie below its nr_ports."""
    if iopl_ok(dom, cpl):
        return True
    if port + size > dom.iobitmap_ports:
        return False
    mask = ((1 << size) - 1) << (port & 7)
    return not _bitmap_word(dom, port >> 3) & mask


def _bitmap_word(dom, index: int) -> int:
    """The two bytes of the guest's bitmap from byte INDEX, read through the current
    page tables; a byte that cannot be read counts as all ones (no access)."""
    word = 0
    for i in range(2):
        try:
            byte = dom.copy_from_guest(dom.iobitmap + index + i, 1)[0]
        except HypercallError:
            byte = NO_ACCESS
        word |= byte << (8 * i)
    return word


def set_iobitmap(dom, request: bytes) -> None:
    """PHYSDEVOP_set_iobitmap (xen/arch/x86/physdev.c): the bitmap's whole 8 KiB must
    be a range the guest may name (guest_handle_okay: below the hypervisor's range,
    mapped or not) and nr_ports at most 65,536, else -EINVAL; the bitmap is read at
    each access, not copied."""
    fields = PHYSDEV_SET_IOBITMAP.unpack(request)
    bitmap, ports = fields["bitmap"], fields["nr_ports"]
    if bitmap + IOBMP_BYTES > dom.hypervisor_start or ports > IO_PORTS:
        raise HypercallError(Errno.EINVAL, f"I/O bitmap {bitmap:#x} for {ports} ports")
    dom.iobitmap, dom.iobitmap_ports = bitmap, ports
