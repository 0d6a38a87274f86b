"""How a hypercall or an emulated instruction fails: a refusal the guest sees as
-errno, or a crash of the whole domain (Xen's domain_crash)."""

from pvtool.abi.xen import Errno


class HypercallError(Exception):
    """A refusal: the hypercall returns -errno to the guest."""

    def __init__(self, errno: Errno, why: str = ""):
        super().__init__(errno, why)
        self.errno = errno
        self.why = why


class DomainCrash(Exception):
    """The guest broke a rule no refusal can answer (Xen's domain_crash)."""

    def __init__(self, reason: str, address: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.address = address  # the page fault's, or a page-table entry's frame


class NotEmulated(Exception):
    """An instruction the emulator leaves alone: its class has no handler, or the CPU
    would fault on it for a reason of the guest's own. After a #GP the fault is the
    guest's to handle; at a trap site the domain cannot go on."""
