"""HYPERVISOR_memory_op as far as PV guests use it, answered as Xen answers a 32-bit PV
guest (common/memory.c do_memory_op, arch/x86/mm.c arch_memory_op, through the compat
layer). The domain's memory is fixed at boot: it owns every frame of the machine's RAM
(docs/ABI.md), so its current and maximum reservations are both nr_pages.

cmd's low MEMOP_EXTENT_SHIFT bits are the command, the rest a continuation's progress
(start_extent), which only the reservation commands may carry.

A 64-bit guest's structures are laid out with 8-byte handles and xen_ulong_t
(abi/xen64.py), and it alone is told where the read-only M2P is
(XENMEM_machphys_mapping, arch/x86/x86_64/mm.c), which 64-bit Linux asks first.
"""

import struct

from pvtool.abi.layouts import E820_ENTRY, XEN_ADD_TO_PHYSMAP, XEN_MEMORY_MAP
from pvtool.abi.xen import E820_RAM, MEMOP_EXTENT_SHIFT, XENMAPSPACE_GMFN_FOREIGN, Errno, XenMem
from pvtool.abi.xen64 import (
    RO_MPT_VIRT_END_64,
    RO_MPT_VIRT_START_64,
    XEN_ADD_TO_PHYSMAP_64,
    XEN_MACHPHYS_MAPPING_64,
    XEN_MEMORY_MAP_64,
)
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError
from pvtool.x86.paging import PAGE_SIZE

MEMOP_CMD_MASK = (1 << MEMOP_EXTENT_SHIFT) - 1
RESERVATIONS = frozenset({XenMem.increase_reservation, XenMem.decrease_reservation,
                          XenMem.populate_physmap})
DOMID = struct.Struct("<H")


def memory_op(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    op, start_extent, arg = args[0] & MEMOP_CMD_MASK, args[0] >> MEMOP_EXTENT_SHIFT, args[1]
    if op in RESERVATIONS:
        # The number of extents done: none, since the domain is at its maximum
        # (assign_pages refuses more) and pvtool takes no frame back (docs/ABI.md).
        return start_extent
    command = COMMANDS.get(op)
    if command is None:
        raise HypercallError(Errno.ENOSYS, f"memory_op command {op}")
    if op == XenMem.add_to_physmap:
        # Its progress must fit xen_add_to_physmap.size, a u16 (do_memory_op).
        if start_extent >> 16:
            raise HypercallError(Errno.EDOM, f"add_to_physmap start_extent {start_extent}")
    elif start_extent:
        raise HypercallError(Errno.EINVAL, f"memory_op {op} with start_extent {start_extent}")
    return command(dom, arg)


def maximum_ram_page(dom: PvDomain, arg: int) -> int:
    """max_page: one past the last machine frame of RAM, all of it the domain's."""
    return dom.nr_pages


def reservation(dom: PvDomain, arg: int) -> int:
    """The current or maximum reservation of the domain named by the domid_t at ARG
    (DOMID_SELF or its own id; -ESRCH for any other): both are nr_pages."""
    (domid,) = DOMID.unpack(dom.copy_from_guest(arg, DOMID.size))
    if not dom.is_named_by(domid):
        raise HypercallError(Errno.ESRCH, f"reservation of domain {domid:#x}")
    return dom.nr_pages


def memory_map(dom: PvDomain, arg: int) -> int:
    """The pseudo-physical map a PV domain gets from libxl: one E820_RAM entry from 0
    to the end of its memory (xc_domain_set_memmap_limit), cut to nr_entries."""
    memory_map_layout = XEN_MEMORY_MAP_64 if dom.vcpu.bits == 64 else XEN_MEMORY_MAP
    request = memory_map_layout.unpack(dom.copy_from_guest(arg, memory_map_layout.size))
    entries = [E820_ENTRY.pack(addr=0, length=dom.nr_pages * PAGE_SIZE, type=E820_RAM)]
    given = entries[:request["nr_entries"]]
    dom.copy_to_guest(request["buffer"], b"".join(given))
    dom.copy_to_guest(arg, memory_map_layout.pack(nr_entries=len(given),
                                                  buffer=request["buffer"]))
    return 0


def machphys_mapping(dom: PvDomain, arg: int) -> int:
    """Where a 64-bit guest reads the machine-to-phys table: Xen's whole read-only
    range, MACH2PHYS_NR_ENTRIES - 1 its last index, as any domU but the hardware
    domain is told. A 32-bit domain's compat answer is not given (docs/ABI.md)."""
    if dom.vcpu.bits != 64:
        raise HypercallError(Errno.ENOSYS, "machphys_mapping for a 32-bit domain")
    entries = (RO_MPT_VIRT_END_64 - RO_MPT_VIRT_START_64) // 8
    dom.copy_to_guest(arg, XEN_MACHPHYS_MAPPING_64.pack(
        v_start=RO_MPT_VIRT_START_64, v_end=RO_MPT_VIRT_END_64, max_mfn=entries - 1))
    return 0


def machine_memory_map(dom: PvDomain, arg: int) -> int:
    """The host's map is for the hardware domain (XSM_PRIV); pvtool's domain is none,
    whatever start_info's flags say (docs/ABI.md)."""
    raise HypercallError(Errno.EPERM, "machine_memory_map: not the hardware domain")


def add_to_physmap(dom: PvDomain, arg: int) -> int:
    """For auto-translated guests only: a PV domain gets -EACCES
    (xatp_permission_check), after the argument is read and its domain found."""
    physmap_layout = XEN_ADD_TO_PHYSMAP_64 if dom.vcpu.bits == 64 else XEN_ADD_TO_PHYSMAP
    request = physmap_layout.unpack(dom.copy_from_guest(arg, physmap_layout.size))
    if request["space"] == XENMAPSPACE_GMFN_FOREIGN:
        raise HypercallError(Errno.ENOSYS, "add_to_physmap of a foreign frame")
    if not dom.is_named_by(request["domid"]):
        raise HypercallError(Errno.ESRCH, f"add_to_physmap for domain {request['domid']:#x}")
    raise HypercallError(Errno.EACCES, "add_to_physmap: a PV domain is not translated")


COMMANDS = {
    XenMem.maximum_ram_page: maximum_ram_page,
    XenMem.current_reservation: reservation,
    XenMem.maximum_reservation: reservation,
    XenMem.add_to_physmap: add_to_physmap,
    XenMem.memory_map: memory_map,
    XenMem.machine_memory_map: machine_memory_map,
    XenMem.machphys_mapping: machphys_mapping,
}
