"""HYPERVISOR_console_io: the emergency console every Xen guest can write to. It is Xen's
own console (its serial line, xen/drivers/char/console.c), not the domain's: its bytes
go to the domain's xen_console, apart from the console ring's (docs/ABI.md)."""

from pvtool.abi.xen import ConsoleIO, Errno
from pvtool.hv.domain import PvDomain, VCpu
from pvtool.hv.errors import HypercallError
from pvtool.hv.hypercalls.common import MAX_CONSOLE_WRITE


def console_io(dom: PvDomain, vcpu: VCpu, args: tuple[int, ...]) -> int:
    cmd, count, buf = args[0], args[1], args[2]
    if cmd == ConsoleIO.write:
        if count > MAX_CONSOLE_WRITE:
            raise HypercallError(Errno.EINVAL, f"console write of {count} bytes")
        data = dom.copy_from_guest(buf, count)
        dom.last_console_io = data
        dom.xen_console(data)
        return 0
    if cmd == ConsoleIO.read:
        return 0  # no input is queued for the emergency console
    raise HypercallError(Errno.ENOSYS, f"console_io command {cmd}")
