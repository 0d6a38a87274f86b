"""The PV console's backend: the hypervisor's side of the console ring (io/console.h,
struct xencons_interface) in the page start_info.console.domU.mfn names.

The guest writes out[], moves out_prod and sends on console.domU.evtchn; the backend
copies out[out_cons .. out_prod) (indexes taken modulo the ring's 2048 bytes) to the
same output as console_io and moves out_cons. A ring that claims more than it holds
is drained of one ring's worth. No input is wired: in[] stays empty.
"""

from typing import TYPE_CHECKING

from pvtool.abi.layouts import XENCONS_INTERFACE
from pvtool.x86.paging import PAGE_SIZE

if TYPE_CHECKING:
    from pvtool.hv.domain import Domain

OUT = XENCONS_INTERFACE.offset("out")
OUT_SIZE = XENCONS_INTERFACE.fields["out"].size
OUT_CONS = XENCONS_INTERFACE.offset("out_cons")
OUT_PROD = XENCONS_INTERFACE.offset("out_prod")


class ConsoleRing:
    def __init__(self, domain: "Domain", mfn: int):
        self.domain = domain
        self.ring = mfn * PAGE_SIZE

    def notify(self) -> None:
        self.drain()

    def drain(self) -> int:
        """Copy what the guest produced to the console; return how many bytes."""
        memory = self.domain.memory
        cons, prod = memory.read_u32(self.ring + OUT_CONS), memory.read_u32(self.ring + OUT_PROD)
        count = min((prod - cons) & 0xFFFFFFFF, OUT_SIZE)
        if count == 0:
            return 0
        out = memory.read_phys(self.ring + OUT, OUT_SIZE)
        data = bytes(out[(cons + i) & (OUT_SIZE - 1)] for i in range(count))
        self.domain.console_output(data)
        memory.write_u32(self.ring + OUT_CONS, cons + count)
        return count
