"""The block device a connected ring serves: blkif requests taken off the ring,
checked, carried out on the disk image and answered, as Linux's blkback does
(drivers/block/xen-blkback/blkback.c).

- Every request is copied out of the ring first (__do_block_io_op), then checked on
  that copy. READ, WRITE and FLUSH_DISKCACHE are served (dispatch_rw_block_io; a
  flush is a write of its segments, usually none, after the cache is flushed,
  REQ_PREFLUSH). WRITE_BARRIER and DISCARD get BLKIF_RSP_EOPNOTSUPP, as blkback
  answers them on a device without barriers or discard (__end_block_io_op,
  dispatch_discard_io), INDIRECT too (this backend offers no
  feature-max-indirect-segments), and any other operation (dispatch_other_io).
- A request is refused whole with BLKIF_RSP_ERROR, before the disk or the guest's
  memory is touched, for: no segments (except a flush) or more than 11, a segment
  with last_sect < first_sect or past the page, sectors past the end of the disk,
  a write to a read-only disk (xen_vbd_translate), or a grant that cannot be used as
  the request needs (xen_blkbk_map: every segment's grant is taken before any I/O;
  a READ writes guest memory, so it needs a writable grant of no page table).
- A frontend whose req_prod runs more than a ring ahead of the responses breaks the
  ring: blkback warns "Frontend provided bogus ring requests ... Halting ring
  processing" and serves it no more; so does this one, with the reason in `broken`.
"""

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from pvtool.abi.blkif import (
    BLKIF_MAX_SEGMENTS_PER_REQUEST,
    BLKIF_REQUEST_32,
    BLKIF_RESPONSE_32,
    BLKIF_SEGMENT,
    BlkifOp,
    BlkifStatus,
)
from pvtool.hv.blkback.ring import BackRing
from pvtool.hv.grants import GrantRefused, GrantTable
from pvtool.machine.disk import SECTOR_SIZE, DiskImage
from pvtool.machine.memory import GuestMemory
from pvtool.x86.paging import PAGE_SIZE

SECTORS_PER_PAGE = PAGE_SIZE // SECTOR_SIZE
SERVED = (BlkifOp.read, BlkifOp.write, BlkifOp.flush_diskcache)


class Refused(Exception):
    """A request answered with STATUS and not carried out."""

    def __init__(self, status: BlkifStatus, why: str):
        super().__init__(why)
        self.status = status


@dataclass(frozen=True)
class Segment:
    gref: int
    first_sect: int
    last_sect: int

    @property
    def sectors(self) -> int:
        return self.last_sect - self.first_sect + 1

    @property
    def offset(self) -> int:
        return self.first_sect * SECTOR_SIZE


class BlockDevice:
    """DISK served over the ring at machine address RING_PAGE, its data pages reached
    through GRANTS; NOTIFY raises the frontend's port. READONLY refuses writes and
    flushes (the backend's `mode` is not "w")."""

    def __init__(self, memory: GuestMemory, ring_page: int, grants: GrantTable,
                 disk: DiskImage, *, readonly: bool, notify: Callable[[], None],
                 log: Callable[[str], None] = lambda message: None):
        self.memory = memory
        self.ring = BackRing(memory, ring_page, BLKIF_REQUEST_32, BLKIF_RESPONSE_32)
        self.grants = grants
        self.disk = disk
        self.readonly = readonly
        self.send = notify
        self.log = log
        self.broken: str | None = None  # why the ring is no longer served

    def notify(self) -> None:
        """The frontend sent on the port: serve the ring until it is empty and re-armed
        (do_block_io_op)."""
        while self.broken is None and self._serve_pending():
            if not self.ring.final_check_for_requests():
                return

    def _serve_pending(self) -> bool:
        """Every request up to req_prod; False if the ring is broken."""
        req_prod = self.ring.req_prod
        if self.ring.overflowed(req_prod):
            self.broken = (f"the frontend provided bogus ring requests ({req_prod} - "
                           f"{self.ring.rsp_prod_pvt}); halting ring processing")
            self.log(f"blkback: {self.broken}")
            return False
        while self.ring.unconsumed(req_prod):
            self._answer(self.ring.take_request())
        return True

    def _answer(self, raw: bytes) -> None:
        request = BLKIF_REQUEST_32.unpack(raw)
        try:
            self._carry_out(request)
            status = BlkifStatus.okay
        except Refused as refusal:
            self.log(f"blkback: request {request['id']:#x} refused: {refusal}")
            status = refusal.status
        self.ring.put_response(BLKIF_RESPONSE_32.pack(
            id=request["id"], operation=request["operation"], status=status))
        if self.ring.push_responses():
            self.send()

    def _carry_out(self, request: dict) -> None:
        operation = request["operation"]
        if operation not in SERVED:
            raise Refused(BlkifStatus.eopnotsupp, f"operation {operation} is not offered")
        segments = checked_segments(request)
        first = request["sector_number"]
        count = sum(segment.sectors for segment in segments)
        if operation != BlkifOp.read and self.readonly:
            raise Refused(BlkifStatus.error, "the disk is read-only")
        if first + count > self.disk.sectors:
            raise Refused(BlkifStatus.error, f"sectors {first}+{count} pass the disk's "
                          f"{self.disk.sectors}")
        with ExitStack() as held:
            frames = [self._take_grant(held, segment, operation) for segment in segments]
            try:
                self._transfer(operation, first, segments, frames)
            except OSError as error:
                raise Refused(BlkifStatus.error, f"disk: {error}") from None

    def _take_grant(self, held: ExitStack, segment: Segment, operation: int) -> int:
        try:
            return held.enter_context(self.grants.access(
                segment.gref, write=operation == BlkifOp.read))
        except GrantRefused as refusal:
            raise Refused(BlkifStatus.error, refusal.why) from None

    def _transfer(self, operation: int, first: int, segments: list[Segment],
                  frames: list[int]) -> None:
        if operation == BlkifOp.flush_diskcache:
            self.disk.flush()
        sector = first
        for segment, frame in zip(segments, frames, strict=True):
            address, length = frame + segment.offset, segment.sectors * SECTOR_SIZE
            if operation == BlkifOp.read:
                self.memory.write_phys(address, self.disk.read(sector, segment.sectors))
            else:
                self.disk.write(sector, self.memory.read_phys(address, length))
            sector += segment.sectors


def checked_segments(request: dict) -> list[Segment]:
    """The request's segments, each inside its page (dispatch_rw_block_io)."""
    count = request["nr_segments"]
    if count == 0 and request["operation"] != BlkifOp.flush_diskcache \
            or count > BLKIF_MAX_SEGMENTS_PER_REQUEST:
        raise Refused(BlkifStatus.error, f"{count} segments")
    segments = []
    for index in range(count):
        raw = request["seg"][index * BLKIF_SEGMENT.size:(index + 1) * BLKIF_SEGMENT.size]
        segment = Segment(**BLKIF_SEGMENT.unpack(raw))
        if segment.last_sect >= SECTORS_PER_PAGE or segment.last_sect < segment.first_sect:
            raise Refused(BlkifStatus.error, f"segment {index}: sectors "
                          f"{segment.first_sect}-{segment.last_sect} of a page")
        segments.append(segment)
    return segments
