"""The console ring both ways (io/console.h; xenconsoled, tools/console/daemon/io.c):
the guest's port raised after its output is drained, and the serial input copied into
in[] as far as the guest has room, the port raised each time.

Offsets are typed from io/console.h here, not imported from pvtool.abi.
"""

import struct

from pvtool.hv.boot import boot_pv_domain
from pvtool.image.elf import load_elf
from pvtool.machine.pc import Machine
from tests.hv.harness import RAM, Booted, hypercall

IN, IN_CONS, IN_PROD, OUT, OUT_CONS, OUT_PROD = 0, 3072, 3076, 1024, 3080, 3084
CONSOLE_PORT = 2
SHARED_INFO = 0xFC410000
EVTCHN_PENDING = SHARED_INFO + 2048
EVENT_CHANNEL_OP, SEND, CONSOLE_IO, CONSOLEIO_READ = 32, 4, 18, 1
SCRATCH = "args: .skip 64\n"


def u32(memory, address: int) -> int:
    return struct.unpack("<I", memory.read_phys(address, 4))[0]


def port_pending(memory) -> bool:
    return bool(memory.read_phys(EVTCHN_PENDING, 1)[0] >> CONSOLE_PORT & 1)


def clear_pending(memory) -> None:
    memory.write_phys(EVTCHN_PENDING, b"\0")


def booted_with_input(guest, data: bytes):
    output = bytearray()
    machine = Machine(ram_size=RAM, output=output.extend, input_data=data)
    return boot_pv_domain(machine, load_elf(guest.path), console_input=data), output


def test_draining_output_raises_the_guests_port(idle):
    memory, ring = idle.memory, idle.domain.console_ring.ring
    clear_pending(memory)
    idle.domain.events.send(CONSOLE_PORT)  # nothing to drain: no event
    assert not port_pending(memory)
    memory.write_phys(ring + OUT, b"hi")
    memory.write_phys(ring + OUT_PROD, struct.pack("<I", 2))
    idle.domain.events.send(CONSOLE_PORT)
    assert bytes(idle.output) == b"hi" and port_pending(memory)


def test_input_fills_in_as_far_as_there_is_room(idle_guest):
    data = bytes(range(256)) * 5  # 1280 bytes: more than in[] holds
    domain, _ = booted_with_input(idle_guest, data)
    memory, ring = domain.memory, domain.console_ring.ring
    assert u32(memory, ring + IN_PROD) == 1024 and port_pending(memory)
    assert memory.read_phys(ring + IN, 1024) == data[:1024]
    # The guest consumes 300 and sends: 256 more arrive, wrapping round in[].
    clear_pending(memory)
    memory.write_phys(ring + IN_CONS, struct.pack("<I", 300))
    domain.events.send(CONSOLE_PORT)
    assert u32(memory, ring + IN_PROD) == 1280 and port_pending(memory)
    assert memory.read_phys(ring + IN, 256) == data[1024:]
    # All delivered: a further send moves nothing and raises nothing.
    clear_pending(memory)
    memory.write_phys(ring + IN_CONS, struct.pack("<I", 1280))
    domain.events.send(CONSOLE_PORT)
    assert u32(memory, ring + IN_PROD) == 1280 and not port_pending(memory)


def test_input_indexes_wrap_and_a_broken_ring_gets_nothing(idle_guest):
    domain, _ = booted_with_input(idle_guest, b"")
    ring_obj, memory = domain.console_ring, domain.memory
    ring = ring_obj.ring
    memory.write_phys(ring + IN_CONS, struct.pack("<II", 0xFFFFFFFE, 0xFFFFFFFE))
    ring_obj.pending_input.extend(b"abcd")
    ring_obj.fill()
    assert u32(memory, ring + IN_PROD) == 2
    assert memory.read_phys(ring + IN + 1022, 2) == b"ab"
    assert memory.read_phys(ring + IN, 2) == b"cd"
    memory.write_phys(ring + IN_CONS, struct.pack("<II", 0, 2000))  # claims 2000 in 1024
    ring_obj.pending_input.extend(b"ef")
    assert ring_obj.fill() == 0 and u32(memory, ring + IN_PROD) == 2000


def test_no_input_leaves_the_ring_and_the_port_alone(idle):
    memory, ring = idle.memory, idle.domain.console_ring.ring
    assert u32(memory, ring + IN_PROD) == 0 and not port_pending(memory)


def test_consoleio_read_gives_nothing(idle_guest):
    """Xen's console_io read hands dom0 Xen's own serial input; pvtool gives the input
    to the console ring instead, so the emergency console has none to read."""
    domain, _ = booted_with_input(idle_guest, b"typed")
    booted = Booted(idle_guest, domain.machine, domain)
    assert hypercall(booted, CONSOLE_IO, CONSOLEIO_READ, 16, booted.addr("args")) == 0
