"""The PV console's backend: the hypervisor's side of the console ring (io/console.h,
struct xencons_interface) in the page start_info.console.domU.mfn names, doing what
xenconsoled does (tools/console/daemon/io.c).

Output: the guest writes out[], moves out_prod and sends on console.domU.evtchn; the
backend copies out[out_cons .. out_prod) (indexes taken modulo the ring's 2048 bytes)
to the same output as console_io, moves out_cons and raises the guest's port, so a
guest waiting for room in out[] wakes (buffer_append). A ring that claims more than
it holds is drained of one ring's worth.

Input: the bytes the serial port gets natively (`--input`, piped standard input) are
copied into in[] as far as the guest has room, in_prod moved and the port raised
(handle_tty_read); the rest waits until the guest consumes and sends.
"""

from typing import TYPE_CHECKING

from pvtool.abi.layouts import XENCONS_INTERFACE
from pvtool.x86.paging import PAGE_SIZE

if TYPE_CHECKING:
    from pvtool.hv.domain import Domain

IN = XENCONS_INTERFACE.offset("in_")
IN_SIZE = XENCONS_INTERFACE.fields["in_"].size
IN_CONS = XENCONS_INTERFACE.offset("in_cons")
IN_PROD = XENCONS_INTERFACE.offset("in_prod")
OUT = XENCONS_INTERFACE.offset("out")
OUT_SIZE = XENCONS_INTERFACE.fields["out"].size
OUT_CONS = XENCONS_INTERFACE.offset("out_cons")
OUT_PROD = XENCONS_INTERFACE.offset("out_prod")
U32 = 0xFFFFFFFF


class ConsoleRing:
    def __init__(self, domain: "Domain", mfn: int, port: int, input_data: bytes = b""):
        self.domain = domain
        self.ring = mfn * PAGE_SIZE
        self.port = port  # the guest's end, raised after each move
        self.pending_input = bytearray(input_data)

    def notify(self) -> None:
        self.drain()
        self.fill()

    def drain(self) -> int:
        """Copy what the guest produced to the console; return how many bytes."""
        memory = self.domain.memory
        cons, prod = memory.read_u32(self.ring + OUT_CONS), memory.read_u32(self.ring + OUT_PROD)
        count = min((prod - cons) & U32, OUT_SIZE)
        if count == 0:
            return 0
        out = memory.read_phys(self.ring + OUT, OUT_SIZE)
        data = bytes(out[(cons + i) & (OUT_SIZE - 1)] for i in range(count))
        self.domain.console_output(data)
        memory.write_u32(self.ring + OUT_CONS, (cons + count) & U32)
        self.domain.events.set_pending(self.port)
        return count

    def fill(self) -> int:
        """Give the guest as much pending input as in[] has room for; return how many
        bytes. A ring whose indexes claim more than it holds gets nothing
        (ring_free_bytes: "ring is screwed")."""
        memory = self.domain.memory
        cons, prod = memory.read_u32(self.ring + IN_CONS), memory.read_u32(self.ring + IN_PROD)
        used = (prod - cons) & U32
        count = min(len(self.pending_input), IN_SIZE - used) if used <= IN_SIZE else 0
        if count == 0:
            return 0
        ring = bytearray(memory.read_phys(self.ring + IN, IN_SIZE))
        for i in range(count):
            ring[(prod + i) & (IN_SIZE - 1)] = self.pending_input[i]
        memory.write_phys(self.ring + IN, bytes(ring))
        del self.pending_input[:count]
        memory.write_u32(self.ring + IN_PROD, (prod + count) & U32)
        self.domain.events.set_pending(self.port)
        return count
