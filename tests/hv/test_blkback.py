"""blkback (issue 14): the block backend in the hypervisor, driven by a frontend in
Python (tests/hv/blkfront.py) over the real domain's memory, grant table, event
channels and XenStore: the handshake, READ, WRITE and FLUSH on the disk file, the
ring's notification rules, and every refusal with the disk and the guest's pages
untouched."""

import os

import pytest

from pvtool.machine.disk import DiskImage
from tests.hv import blkfront
from tests.hv.blkfront import (
    BACK,
    CLOSED,
    CLOSING,
    CONNECTED,
    DATA_PAGES,
    DISCARD,
    EOPNOTSUPP,
    ERROR,
    FLUSH,
    INDIRECT,
    INIT_WAIT,
    INITIALISED,
    INITIALISING,
    OKAY,
    PAGE,
    READ,
    RING_SIZE,
    SECTOR,
    WRITE,
    WRITE_BARRIER,
    Frontend,
    Request,
    boot_with_disk,
    disk_file,
    sector_pattern,
)

SCRATCH = blkfront.SCRATCH  # the idle guest's pages: the ring, the data pages
SECTORS = 64


@pytest.fixture
def image(tmp_path):
    return disk_file(tmp_path / "disk.img", SECTORS)


def open_front(idle_guest, image, *, snapshot: bool = False, connect: bool = True):
    disk = DiskImage.open(image, snapshot=snapshot)
    front = Frontend(boot_with_disk(idle_guest, disk))
    front.disk = disk
    if connect:
        front.connect()
    return front


@pytest.fixture
def front(idle_guest, image):
    front = open_front(idle_guest, image)
    yield front
    front.disk.close()


def test_the_backend_publishes_the_disk_and_waits_in_initwait(idle_guest, image):
    front = open_front(idle_guest, image, connect=False)
    assert front.backend("state") == b"%d" % INIT_WAIT
    assert front.backend("sectors") == b"%d" % SECTORS
    assert front.backend("sector-size") == b"512"
    assert front.backend("info") == b"0"
    assert front.backend("feature-flush-cache") == b"1"
    assert front.backend("mode") == b"w"


@pytest.mark.parametrize("state", [INITIALISED, CONNECTED])
def test_a_frontend_initialised_or_connected_is_connected(idle_guest, image, state):
    front = open_front(idle_guest, image, connect=False)
    front.connect(state=state)
    assert front.backend("state") == b"%d" % CONNECTED
    status, remote_dom, _ = front.domain.events.status(front.port)
    assert (status, remote_dom) == (2, 0)  # interdomain to domain 0


def test_read_write_then_read_back(front, image):
    ref = front.grant_data(0)
    assert front.submit(Request(READ, 3, ((ref, 0, 0),), id=7)) == (7, READ, OKAY)
    assert front.memory.read_phys(front.data(0), SECTOR) == sector_pattern(3)
    # Two segments: sectors 2-7 of page 1, then sector 0 of page 2: disk 10-16.
    one, two = front.grant_data(1, readonly=True), front.grant_data(2, readonly=True)
    payload = os.urandom(7 * SECTOR)
    front.memory.write_phys(front.data(1) + 2 * SECTOR, payload[:6 * SECTOR])
    front.memory.write_phys(front.data(2), payload[6 * SECTOR:])
    assert front.submit(Request(WRITE, 10, ((one, 2, 7), (two, 0, 0)), id=8)) \
        == (8, WRITE, OKAY)
    expected = b"".join(sector_pattern(n) for n in range(SECTORS))
    expected = expected[:10 * SECTOR] + payload + expected[17 * SECTOR:]
    assert image.read_bytes() == expected  # written through, nothing else touched
    back = front.grant_data(3)
    assert front.submit(Request(READ, 10, ((back, 0, 6),)))[2] == OKAY
    assert front.memory.read_phys(front.data(3), 7 * SECTOR) == payload


def test_flush_syncs_the_disk(front, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    assert front.submit(Request(FLUSH, id=9)) == (9, FLUSH, OKAY)
    assert synced == [front.disk._fd]


def test_a_snapshot_keeps_writes_in_memory(idle_guest, image):
    before = image.read_bytes()
    front = open_front(idle_guest, image, snapshot=True)
    assert front.backend("info") == b"0"  # --snapshot still takes writes
    ref = front.grant_data(0)
    front.memory.write_phys(front.data(0), b"\x5a" * SECTOR)
    assert front.submit(Request(WRITE, 5, ((ref, 0, 0),)))[2] == OKAY
    front.memory.write_phys(front.data(0), bytes(SECTOR))
    assert front.submit(Request(READ, 5, ((ref, 0, 0),)))[2] == OKAY
    assert front.memory.read_phys(front.data(0), SECTOR) == b"\x5a" * SECTOR
    front.disk.close()
    assert image.read_bytes() == before


def test_the_backend_rearms_req_event_so_every_push_notifies(front):
    ref = front.grant_data(0)
    for count in range(1, 5):
        front.queue(Request(READ, count, ((ref, 0, 0),)))
        assert front.push()  # req_event was re-armed past the last request
        assert front.index("req_event") == count + 1
        front.responses()
    assert front.notifies == 4


def test_requests_pushed_together_get_one_notification_each_way(front):
    ref = front.grant_data(0)
    front.set_index("rsp_event", 1)
    for n in range(3):
        front.queue(Request(READ, n, ((ref, 0, 0),), id=n))
    assert front.push() and front.pending()
    assert [r[0] for r in front.responses(rearm=False)] == [0, 1, 2]
    front.queue(Request(READ, 0, ((ref, 0, 0),)))
    front.push()
    assert not front.pending()  # rsp_event was left at 1: no notification asked
    front.responses()
    front.queue(Request(READ, 0, ((ref, 0, 0),)))
    front.push()
    assert front.pending()  # re-armed: the next response notifies


def test_a_frontend_that_never_consumes_responses_is_still_served(front, image):
    ref = front.grant_data(0, readonly=True)
    front.memory.write_phys(front.data(0), b"\x77" * SECTOR)
    for n in range(3 * RING_SIZE):
        front.queue(Request(WRITE, n % SECTORS, ((ref, 0, 0),), id=n))
        front.push()
    assert front.index("rsp_prod") == 3 * RING_SIZE
    assert image.read_bytes() == b"\x77" * SECTOR * SECTORS


def refusals(front):
    """(name, request) pairs each refused with BLKIF_RSP_ERROR."""
    page = front.domain.pagetables.base_mfn
    good = front.grant_data(0)
    front.grant(20, front.data(1) >> 12, readonly=True)
    front.grant(21, page)  # the page directory in use
    front.grant(22, front.data(1) >> 12, domid=5)  # for another domain
    front.grant(23, front.data(1) >> 12, flags=0)  # no longer granted
    front.grant(24, 0xFC000)  # a frame of the hypervisor's
    return [
        ("ref past the table", Request(READ, 0, ((4096, 0, 0),))),
        ("ref never granted", Request(WRITE, 0, ((100, 0, 0),))),
        ("ref ended", Request(WRITE, 0, ((23, 0, 0),))),
        ("grant for another domain", Request(WRITE, 0, ((22, 0, 0),))),
        ("read into a read-only grant", Request(READ, 0, ((20, 0, 0),))),
        ("read into a page table", Request(READ, 0, ((21, 0, 0),))),
        ("frame not the domain's", Request(WRITE, 0, ((24, 0, 0),))),
        ("a bad grant after a good one", Request(WRITE, 0, ((good, 0, 0), (100, 0, 0)))),
        ("no segments", Request(WRITE, 0, ())),
        ("twelve segments", Request(WRITE, 0, ((good, 0, 0),) * 12)),
        ("first_sect > last_sect", Request(WRITE, 0, ((good, 3, 2),))),
        ("last_sect past the page", Request(WRITE, 0, ((good, 0, 8),))),
        ("sectors past the end", Request(WRITE, SECTORS - 1, ((good, 0, 1),))),
        ("sector number wrapping", Request(WRITE, 2**64 - 1, ((good, 0, 1),))),
        ("nr_segments beyond its array", Request(WRITE, 0, (), nr_segments=200)),
    ]


def test_each_malformed_request_gets_an_error_and_touches_nothing(front, image):
    before = image.read_bytes()
    for name, request in refusals(front):
        pages = front.memory.read_phys(front.data(0), DATA_PAGES * PAGE)
        front.memory.write_phys(front.data(0), os.urandom(PAGE))  # what a WRITE would carry
        assert front.submit(request)[2] == ERROR, name
        assert image.read_bytes() == before, name
        assert front.memory.read_phys(front.data(0) + PAGE, (DATA_PAGES - 1) * PAGE) \
            == pages[PAGE:], name
    assert front.backend("state") == b"%d" % CONNECTED  # the device goes on


def test_a_read_only_disk_refuses_writes_and_flushes(idle_guest, image):
    disk = DiskImage.open(image, snapshot=False)
    booted = boot_with_disk(idle_guest, disk)
    front = Frontend(booted)
    blkback = booted.domain.blkback
    xs = booted.domain.xenstore.backend
    xs.write(f"{BACK}/mode", b"r")  # what libxl writes for a read-only disk
    blkback.readonly = True
    ref = front.grant_data(0)
    front.connect()
    before = image.read_bytes()
    assert front.submit(Request(WRITE, 0, ((ref, 0, 0),)))[2] == ERROR
    assert front.submit(Request(FLUSH))[2] == ERROR
    assert front.submit(Request(READ, 1, ((ref, 0, 0),)))[2] == OKAY
    assert image.read_bytes() == before
    disk.close()


@pytest.mark.parametrize("operation", [WRITE_BARRIER, 4, DISCARD, INDIRECT, 7, 0xFF])
def test_operations_not_offered_are_answered_eopnotsupp(front, image, operation):
    before = image.read_bytes()
    ref = front.grant_data(0)
    assert front.submit(Request(operation, 0, ((ref, 0, 0),), id=0xDEADBEEF0001)) \
        == (0xDEADBEEF0001, operation, EOPNOTSUPP)
    assert image.read_bytes() == before


def test_a_req_prod_past_the_ring_halts_the_ring(front, image):
    before = image.read_bytes()
    front.req_prod_pvt = RING_SIZE + 1
    front.push()
    assert front.index("rsp_prod") == 0
    assert "bogus ring requests" in front.domain.blkback.device.broken
    front.set_index("req_prod", 1)
    front.domain.events.send(front.port)
    assert front.index("rsp_prod") == 0  # no longer served
    assert image.read_bytes() == before


@pytest.mark.parametrize("protocol", [b"x86_64-abi", b"arm-abi", b"nonsense"])
def test_another_abi_is_refused_as_xenbus_dev_fatal(idle_guest, image, protocol):
    front = open_front(idle_guest, image, connect=False)
    front.connect(protocol=protocol)
    assert front.backend("state") == b"%d" % CLOSING
    error = front.domain.xenstore.backend.read(
        "/local/domain/0/error/backend/vbd/1/51712/error")
    assert error == b"38 unknown fe protocol " + protocol
    assert front.domain.events.status(front.port)[0] == 1  # still unbound
    front.disk.close()


def test_no_protocol_means_x86_32(idle_guest, image):
    front = open_front(idle_guest, image, connect=False)
    front.connect(protocol=None)
    assert front.backend("state") == b"%d" % CONNECTED
    front.disk.close()


@pytest.mark.parametrize("ring_ref", [48, 4096])  # never granted, past the table
def test_a_ring_that_cannot_be_mapped_is_refused(idle_guest, image, ring_ref):
    front = open_front(idle_guest, image, connect=False)
    front.connect(ring_ref=ring_ref)
    assert front.backend("state") == b"%d" % CLOSING
    front.disk.close()


def test_shutdown_and_reconnect(front):
    frame = front.ring >> 12
    held = front.domain.frames.type_info(frame)
    front.set_state(CLOSING)
    assert front.backend("state") == b"%d" % CLOSING
    front.set_state(CLOSED)
    assert front.backend("state") == b"%d" % CLOSED
    assert front.domain.events.status(front.port)[0] == 1  # unbound again
    assert front.domain.frames.type_info(frame) >> 8 == (held >> 8) - 1
    assert front.memory.read_phys(front.table + 8 * 8, 2) == b"\x01\x00"  # grant idle
    front.set_state(INITIALISING)
    assert front.backend("state") == b"%d" % INIT_WAIT
    front.connect()
    ref = front.grant_data(0)
    assert front.submit(Request(READ, 1, ((ref, 0, 0),)))[2] == OKAY
