"""HYPERVISOR_grant_table_op: the domain's v1 grant table (hv/grants.py), answered as
Xen answers a 32-bit PV guest: common/grant_table.c (do_grant_table_op and one
function per command) behind the compat layer, common/compat/grant_table.c.

A command either fails whole with -errno (a bad count, an unreadable argument) or
returns 0 with each element's outcome in its `status` (GNTST_*). pvtool serves what a
frontend calls; mapping and transferring pages (a backend's commands) answer -ENOSYS,
since every backend lives in the hypervisor (docs/ABI.md).
"""

import struct
from collections.abc import Callable
from contextlib import ExitStack, suppress

from pvtool.abi.layouts import (
    GNTTAB_COPY,
    GNTTAB_GET_VERSION,
    GNTTAB_QUERY_SIZE,
    GNTTAB_SET_VERSION,
    GNTTAB_SETUP_TABLE,
)
from pvtool.abi.xen import (
    DOMID_SELF,
    GNTCOPY_DEST_GREF,
    GNTCOPY_SOURCE_GREF,
    Errno,
    GnttabOp,
    GrantStatus,
)
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError
from pvtool.hv.grants import GrantRefused, check_span
from pvtool.hv.hypercalls.common import MAX_BATCH
from pvtool.x86.paging import PAGE_SHIFT

GNTTABOP_CMD_MASK = (1 << 12) - 1  # the rest of cmd is a continuation's progress
MAX_VERSION = 1  # set_version(2) gets -ENOSYS, as from Xen booted with gnttab=max-ver:1


def grant_table_op(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    cmd, uop, count = args[0], args[1], args[2]
    if count >> 31:  # (int)count < 0
        raise HypercallError(Errno.EINVAL, f"grant_table_op count {count:#x}")
    if cmd & ~GNTTABOP_CMD_MASK:  # progress bits only a continuation sets
        raise HypercallError(Errno.EINVAL, f"grant_table_op cmd {cmd:#x}")
    command = COMMANDS.get(cmd)
    if command is None:
        raise HypercallError(Errno.ENOSYS, f"grant_table_op command {cmd}")
    return command(dom, uop, count)


def setup_table(dom: PvDomain, uop: int, count: int) -> int:
    """Grow the table to nr_frames frames and list them. The compat layer refuses a
    count above 1 and does nothing for 0; a frame list past the guest's range is
    -EFAULT before anything else, one it cannot write is ignored (compat's
    __copy_to_compat_offset)."""
    if count > 1:
        raise HypercallError(Errno.EINVAL, f"setup_table count {count}")
    if count == 0:
        return 0
    op = GNTTAB_SETUP_TABLE.unpack(dom.copy_from_guest(uop, GNTTAB_SETUP_TABLE.size))
    dom.check_guest_range(op["frame_list"], 4 * op["nr_frames"])
    table = dom.grants
    if not dom.is_named_by(op["dom"]):
        status = GrantStatus.bad_domain
    elif op["nr_frames"] > table.max_frames:
        status = GrantStatus.general_error
    else:
        status = GrantStatus.okay
        table.grow(op["nr_frames"])
        frames = [table.frame(i) for i in range(op["nr_frames"])]
        with suppress(HypercallError):  # compat ignores a fault here
            dom.copy_to_guest(op["frame_list"], struct.pack(f"<{len(frames)}I", *frames))
    _put(dom, uop, GNTTAB_SETUP_TABLE, status=status)
    return 0


def query_size(dom: PvDomain, uop: int, count: int) -> int:
    if count != 1:
        raise HypercallError(Errno.EINVAL, f"query_size count {count}")
    op = GNTTAB_QUERY_SIZE.unpack(dom.copy_from_guest(uop, GNTTAB_QUERY_SIZE.size))
    if dom.is_named_by(op["dom"]):
        op.update(nr_frames=dom.grants.nr_frames, max_nr_frames=dom.grants.max_frames,
                  status=GrantStatus.okay)
    else:
        op["status"] = GrantStatus.bad_domain
    dom.copy_to_guest(uop, GNTTAB_QUERY_SIZE.pack(**op))
    return 0


def set_version(dom: PvDomain, uop: int, count: int) -> int:
    """Version 1 stays; 2 is -ENOSYS and anything else -EINVAL; the current version
    is written back whatever the answer (gnttab_set_version)."""
    version = GNTTAB_SET_VERSION.unpack(dom.copy_from_guest(uop, GNTTAB_SET_VERSION.size))
    answer = 0
    if version["version"] not in (1, 2):
        answer = -Errno.EINVAL
    elif version["version"] > MAX_VERSION:
        answer = -Errno.ENOSYS
    dom.copy_to_guest(uop, GNTTAB_SET_VERSION.pack(version=dom.grants.version))
    return answer


def get_version(dom: PvDomain, uop: int, count: int) -> int:
    op = GNTTAB_GET_VERSION.unpack(dom.copy_from_guest(uop, GNTTAB_GET_VERSION.size))
    if not dom.is_named_by(op["dom"]):
        raise HypercallError(Errno.ESRCH, f"get_version of domain {op['dom']:#x}")
    _put(dom, uop, GNTTAB_GET_VERSION, version=dom.grants.version)
    return 0


def copy(dom: PvDomain, uop: int, count: int) -> int:
    """Copy between pages named by grant or, for DOMID_SELF only, by frame number
    (gnttab_copy): each element gets its status; a fault reading or writing the
    array ends the batch with -EFAULT."""
    if count > MAX_BATCH:
        raise HypercallError(Errno.EINVAL, f"grant copy of {count} elements")
    dom.check_guest_range(uop, count * GNTTAB_COPY.size)
    for i in range(count):
        address = uop + i * GNTTAB_COPY.size
        op = GNTTAB_COPY.unpack(dom.copy_from_guest(address, GNTTAB_COPY.size))
        try:
            _copy_one(dom, op)
            status = GrantStatus.okay
        except GrantRefused as refusal:
            status = refusal.status
        _put(dom, address, GNTTAB_COPY, status=status)
    return 0


def _copy_one(dom: PvDomain, op: dict) -> None:
    """Both pages claimed (their grants in use while the copy lasts), then the
    bounds checked, then the bytes moved (gnttab_copy_one, gnttab_copy_buf)."""
    with ExitStack() as held:
        source = _claim(dom, held, op, "source", GNTCOPY_SOURCE_GREF, write=False)
        dest = _claim(dom, held, op, "dest", GNTCOPY_DEST_GREF, write=True)
        check_span(op["source_offset"], op["len"])
        check_span(op["dest_offset"], op["len"])
        data = dom.memory.read_phys(source + op["source_offset"], op["len"])
        dom.memory.write_phys(dest + op["dest_offset"], data)


def _claim(dom: PvDomain, held: ExitStack, op: dict, side: str, gref_flag: int,
           write: bool) -> int:
    """One side's page, as a machine address (gnttab_copy_lock_domain,
    gnttab_copy_claim_buf): a grant of the domain's own table, which the domain uses
    as itself, or a frame of its own."""
    domid, ref = op[f"{side}_domid"], op[f"{side}_ref"]
    if not op["flags"] & gref_flag and domid != DOMID_SELF:
        raise GrantRefused(GrantStatus.permission_denied,
                           f"copy {side}: a frame of domain {domid:#x}")
    if not dom.is_named_by(domid):
        raise GrantRefused(GrantStatus.bad_domain, f"copy {side}: domain {domid:#x}")
    if op["flags"] & gref_flag:
        return held.enter_context(dom.grants.access(ref, write=write, domid=dom.domid))
    return dom.grants.usable_frame(ref, write) << PAGE_SHIFT


def _put(dom: PvDomain, uop: int, layout, **fields: int) -> None:
    """Write FIELDS of the guest's structure at UOP back (__copy_field_to_guest)."""
    values = layout.pack(**fields)
    for name in fields:
        field = layout.fields[name]
        dom.copy_to_guest(uop + field.offset, values[field.offset:field.offset + field.size])


COMMANDS: dict[int, Callable[[PvDomain, int, int], int]] = {
    GnttabOp.setup_table: setup_table,
    GnttabOp.copy: copy,
    GnttabOp.query_size: query_size,
    GnttabOp.set_version: set_version,
    GnttabOp.get_version: get_version,
}
