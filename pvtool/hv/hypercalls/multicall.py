"""HYPERVISOR_multicall: several hypercalls for the price of one exit. Each entry's
result is written back; an iret inside a multicall ends it (XEN-ABI.md)."""

import struct

from pvtool.abi.layouts import MULTICALL_ENTRY
from pvtool.abi.xen import Errno, Hypercall
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError
from pvtool.hv.hypercalls.common import MAX_BATCH, NO_RESULT

RESULT_OFFSET = MULTICALL_ENTRY.offset("result")


def multicall(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> object:
    entries, count = args[0], args[1]
    if count > MAX_BATCH:
        raise HypercallError(Errno.EINVAL, f"multicall of {count} entries")
    from pvtool.hv.hypercalls import call  # the package's table imports this module

    for index in range(count):
        address = entries + index * MULTICALL_ENTRY.size
        entry = MULTICALL_ENTRY.unpack(dom.copy_from_guest(address, MULTICALL_ENTRY.size))
        op = entry["op"]
        if op == Hypercall.multicall:
            raise HypercallError(Errno.EINVAL, "multicall inside a multicall")
        result = call(dom, vcpu, op, tuple(entry["args"]))
        if result is NO_RESULT:
            return NO_RESULT  # an iret ended the batch and set EAX from its frame
        dom.copy_to_guest(address + RESULT_OFFSET, struct.pack("<I", result & 0xFFFFFFFF))
    return 0
