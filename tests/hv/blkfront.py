"""A block frontend written in Python, for blkback's tests: it does what Mini-OS's
blkfront does, in the guest's memory and as domain 1 in the store (grant entries in
the guest's table, a ring page it initialises, a port allocated unbound for domain 0,
its keys and state written in one transaction), without running guest code.

Layouts and numbers are typed from Xen's headers here (io/blkif.h, io/ring.h,
grant_table.h, io/xenbus.h), not imported from pvtool.abi.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from pvtool.hv.boot import boot_pv_domain
from pvtool.hv.xenstore.client import StoreClient
from pvtool.image.elf import load_elf
from pvtool.machine.disk import DiskImage
from pvtool.machine.pc import Machine
from tests.hv.harness import RAM, Booted, hypercall

PAGE, SECTOR = 4096, 512
GUEST, BACKEND = 1, 0  # xl's first domU, and domain 0 where every backend lives
DOMID_SELF = 0x7FF0
READ, WRITE, WRITE_BARRIER, FLUSH, DISCARD, INDIRECT = 0, 1, 2, 3, 5, 6
OKAY, ERROR, EOPNOTSUPP = 0, -1, -2
RING_SIZE, SLOT = 32, 108  # blkif on x86_32: 4032 // 108 = 37, rounded down to 32
REQUEST = struct.Struct("<BBHQQ")  # operation, nr_segments, handle, id, sector_number
SEGMENT = struct.Struct("<IBBxx")  # gref, first_sect, last_sect
RESPONSE = struct.Struct("<QBxh")  # id, operation, status
GTF_PERMIT_ACCESS, GTF_READONLY = 1, 4
GRANT_TABLE_OP, SETUP_TABLE = 20, 2
EVTCHN_PENDING = 0xFC410000 + 2048  # shared_info.evtchn_pending at pvtool's fixed mapping
FIRST_REF = 8  # GNTTAB_NR_RESERVED_ENTRIES
XVDA = 51712
FRONT = f"/local/domain/{GUEST}/device/vbd/{XVDA}"
BACK = f"/local/domain/{BACKEND}/backend/vbd/{GUEST}/{XVDA}"
INITIALISING, INIT_WAIT, INITIALISED, CONNECTED, CLOSING, CLOSED = 1, 2, 3, 4, 5, 6
# The guest's pages: the ring, then data pages (bss of the idle guest).
SCRATCH = ".balign 4096\nring: .skip 4096\ndata: .skip 4096 * 16\nargs: .skip 64\n"
DATA_PAGES = 16


def boot_with_disk(guest, disk: DiskImage) -> Booted:
    output = bytearray()
    machine = Machine(ram_size=RAM, output=output.extend, disks=[disk])
    domain = boot_pv_domain(machine, load_elf(guest.path))
    return Booted(guest, machine, domain, output)


def disk_file(path: Path, sectors: int) -> Path:
    """SECTORS sectors, each filled with its own pattern (its number, repeated)."""
    path.write_bytes(b"".join(sector_pattern(n) for n in range(sectors)))
    return path


def sector_pattern(number: int) -> bytes:
    return struct.pack("<I", number * 0x01010101 ^ 0xA5A5A5A5) * (SECTOR // 4)


@dataclass
class Request:
    operation: int
    sector: int = 0
    segments: tuple[tuple[int, int, int], ...] = ()  # (gref, first_sect, last_sect)
    id: int = 0x1234
    nr_segments: int | None = None  # what the request claims, if not len(segments)

    def pack(self) -> bytes:
        count = len(self.segments) if self.nr_segments is None else self.nr_segments
        segs = b"".join(SEGMENT.pack(*seg) for seg in self.segments)
        return (REQUEST.pack(self.operation, count, XVDA, self.id, self.sector)
                + segs).ljust(SLOT, b"\0")


class Frontend:
    def __init__(self, booted: Booted):
        self.booted = booted
        self.domain = booted.domain
        self.memory = booted.memory
        self.xs = StoreClient(self.domain.xenstore.store, domid=GUEST)
        self.ring = booted.guest["ring"]
        self.req_prod_pvt = self.rsp_cons = 0
        self.port = 0
        self.notifies = 0  # sends the ring's rule asked for
        self.table = self._setup_table()

    def _setup_table(self) -> int:
        """GNTTABOP_setup_table for one frame, as the guest asks: its machine address."""
        args = self.booted.guest["args"]
        self.memory.write_phys(args, struct.pack("<HxxIhxxI", DOMID_SELF, 1, 0, args + 16))
        assert hypercall(self.booted, GRANT_TABLE_OP, SETUP_TABLE, args, 1) == 0
        assert struct.unpack("<h", self.memory.read_phys(args + 8, 2))[0] == 0
        return struct.unpack("<I", self.memory.read_phys(args + 16, 4))[0] * PAGE

    # -- pages and grants --------------------------------------------------------
    def data(self, index: int) -> int:
        return self.booted.guest["data"] + index * PAGE

    def grant(self, ref: int, frame: int, *, readonly: bool = False,
              domid: int = BACKEND, flags: int | None = None) -> None:
        """Write the entry as the header says: domid and frame, then the flags."""
        entry = self.table + 8 * ref
        self.memory.write_phys(entry + 2, struct.pack("<HI", domid, frame))
        if flags is None:
            flags = GTF_PERMIT_ACCESS | (GTF_READONLY if readonly else 0)
        self.memory.write_phys(entry, struct.pack("<H", flags))

    def grant_data(self, index: int, *, readonly: bool = False) -> int:
        """Grant data page INDEX at ref FIRST_REF + 1 + INDEX; the ref."""
        ref = FIRST_REF + 1 + index
        self.grant(ref, self.data(index) >> 12, readonly=readonly)
        return ref

    # -- the handshake -----------------------------------------------------------
    def connect(self, *, state: int = CONNECTED, protocol: bytes | None = b"x86_32-abi",
                ring_ref: int = FIRST_REF) -> None:
        """SHARED_RING_INIT, the ring granted, a port, and the keys (Mini-OS order)."""
        self.memory.write_phys(self.ring, struct.pack("<4I", 0, 1, 0, 1).ljust(PAGE, b"\0"))
        self.grant(FIRST_REF, self.ring >> 12)
        self.port = self.domain.events.alloc_unbound(DOMID_SELF, BACKEND)
        with self.xs.transaction():
            self.xs.write(f"{FRONT}/ring-ref", b"%d" % ring_ref)
            self.xs.write(f"{FRONT}/event-channel", b"%d" % self.port)
            if protocol is not None:
                self.xs.write(f"{FRONT}/protocol", protocol)
            self.xs.write(f"{FRONT}/state", b"%d" % state)

    def set_state(self, state: int) -> None:
        self.xs.write(f"{FRONT}/state", b"%d" % state)

    def backend(self, key: str) -> bytes:
        return self.xs.read(f"{BACK}/{key}")

    # -- the ring ----------------------------------------------------------------
    def index(self, name: str) -> int:
        offset = {"req_prod": 0, "req_event": 4, "rsp_prod": 8, "rsp_event": 12}[name]
        return struct.unpack("<I", self.memory.read_phys(self.ring + offset, 4))[0]

    def set_index(self, name: str, value: int) -> None:
        offset = {"req_prod": 0, "req_event": 4, "rsp_prod": 8, "rsp_event": 12}[name]
        self.memory.write_phys(self.ring + offset, struct.pack("<I", value & 0xFFFFFFFF))

    def queue(self, request: Request) -> None:
        slot = self.ring + 64 + (self.req_prod_pvt % RING_SIZE) * SLOT
        self.memory.write_phys(slot, request.pack())
        self.req_prod_pvt += 1

    def push(self) -> bool:
        """RING_PUSH_REQUESTS_AND_CHECK_NOTIFY, and the send when it says so (the
        send EVTCHNOP_send makes for the guest)."""
        old, new = self.index("req_prod"), self.req_prod_pvt
        self.set_index("req_prod", new)
        notify = (new - self.index("req_event")) % 2**32 < (new - old) % 2**32
        if notify:
            self.notifies += 1
            self.domain.events.send(self.port)
        return notify

    def submit(self, request: Request) -> tuple[int, int, int]:
        """Queue, push, and take the response: (id, operation, status)."""
        self.queue(request)
        self.push()
        (response,) = self.responses()
        return response

    def responses(self, *, rearm: bool = True) -> list[tuple[int, int, int]]:
        """Every published response; rsp_event re-armed (RING_FINAL_CHECK_FOR_RESPONSES)
        unless REARM is false."""
        found = []
        while self.rsp_cons != self.index("rsp_prod"):
            slot = self.ring + 64 + (self.rsp_cons % RING_SIZE) * SLOT
            found.append(RESPONSE.unpack(self.memory.read_phys(slot, RESPONSE.size)))
            self.rsp_cons += 1
        if rearm:
            self.set_index("rsp_event", self.rsp_cons + 1)
        return found

    def pending(self) -> bool:
        """The port's bit in shared_info.evtchn_pending, cleared as the guest would."""
        byte = EVTCHN_PENDING + self.port // 8
        bits = self.memory.read_phys(byte, 1)[0]
        self.memory.write_phys(byte, bytes((bits & ~(1 << self.port % 8),)))
        return bool(bits >> self.port % 8 & 1)
