"""Fuzzing blkback (issue 14, item 5): a hostile frontend's grant entries and
requests, random in every field, against a fresh domain and disk per example. Each
request's answer is checked against blkif.h's rules stated here (served, refused with
BLKIF_RSP_ERROR, or BLKIF_RSP_EOPNOTSUPP), and after each one the disk file and the
guest's data pages must equal a model that applies only the valid requests: no byte
of the disk changes outside a valid WRITE's sectors, no byte of guest memory outside
a valid READ's. A req_prod run past the ring halts the ring and changes nothing.
No request may raise in the hypervisor.
"""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvtool.machine.disk import DiskImage
from tests.hv import blkfront
from tests.hv.blkfront import (
    EOPNOTSUPP,
    ERROR,
    FLUSH,
    OKAY,
    PAGE,
    READ,
    RING_SIZE,
    SECTOR,
    WRITE,
    Frontend,
    Request,
    boot_with_disk,
    disk_file,
)
from tests.profiles import examples

SCRATCH = blkfront.SCRATCH
SECTORS = 24
DATA = 4  # data pages the grants may name
REFS = range(9, 16)
GTF_PERMIT_ACCESS, GTF_READONLY = 1, 4
OFFERED = (READ, WRITE, FLUSH)
HV_FRAME = 0xFC000


def grant_entries():
    flags = st.sampled_from([0, 1, 1, 1, 1 | GTF_READONLY, 2, 3])
    domid = st.sampled_from([0, 0, 0, 1, 5, 0x7FF0])
    frame = st.sampled_from(["data0", "data1", "data2", "data3", "table", "hv", "past"])
    return st.lists(st.tuples(flags, domid, frame), min_size=len(REFS), max_size=len(REFS))


def requests():
    gref = st.one_of(st.sampled_from(list(REFS)), st.sampled_from([0, 100, 511, 512, 2**32 - 1]))
    sect = st.one_of(st.integers(0, 7), st.sampled_from([8, 9, 255]))
    segment = st.tuples(gref, sect, sect)
    return st.builds(
        Request,
        operation=st.one_of(st.sampled_from([READ, WRITE, FLUSH, READ, WRITE, 2, 5, 6]),
                            st.integers(0, 255)),
        sector=st.one_of(st.integers(0, SECTORS + 2), st.sampled_from([2**64 - 1, 2**63])),
        segments=st.lists(segment, max_size=12).map(tuple),
        id=st.integers(0, 2**64 - 1),
        nr_segments=st.one_of(st.none(), st.integers(0, 255)))


def steps():
    overflow = st.tuples(st.just("overflow"), st.sampled_from([RING_SIZE + 1, 1000, 2**32 - 1]))
    return st.lists(st.one_of(st.tuples(st.just("request"), requests()), overflow),
                    min_size=1, max_size=8)


class Model:
    """What the disk and the data pages must hold: valid requests applied."""

    def __init__(self, front: Frontend, image: bytes, entries: list):
        self.front = front
        self.disk = bytearray(image)
        self.pages = bytearray(front.memory.read_phys(front.data(0), DATA * PAGE))
        nr_pages = front.domain.nr_pages
        frames = {f"data{i}": front.data(i) >> 12 for i in range(DATA)}
        frames.update(table=front.domain.pagetables.base_mfn, hv=HV_FRAME, past=nr_pages)
        self.grants = {ref: (flags, domid, frames[frame])
                       for ref, (flags, domid, frame) in zip(REFS, entries, strict=True)}
        for ref, (flags, domid, frame) in self.grants.items():
            front.grant(ref, frame, domid=domid, flags=flags)

    def usable(self, ref: int, read: bool) -> bool:
        flags, domid, frame = self.grants.get(ref, (0, 0, 0))
        data_frames = [self.front.data(i) >> 12 for i in range(DATA)]
        return (flags & 3 == GTF_PERMIT_ACCESS and domid == 0
                and frame < self.front.domain.nr_pages
                and not (read and (flags & GTF_READONLY or frame not in data_frames)))

    def status(self, request: Request) -> int:
        if request.operation not in OFFERED:
            return EOPNOTSUPP
        count = len(request.segments) if request.nr_segments is None else request.nr_segments
        if count == 0 and request.operation != FLUSH or count > 11:
            return ERROR
        segments = request.segments[:count]
        if len(segments) < count:  # the rest of seg[] is zeros: gref 0, sectors 0-0
            segments += ((0, 0, 0),) * (count - len(segments))
        if any(last > 7 or last < first for _, first, last in segments):
            return ERROR
        sectors = sum(last - first + 1 for _, first, last in segments)
        if request.sector + sectors > SECTORS:
            return ERROR
        if not all(self.usable(ref, request.operation == READ) for ref, _, _ in segments):
            return ERROR
        self.apply(request, segments)
        return OKAY

    def apply(self, request: Request, segments) -> None:
        sector = request.sector
        for ref, first, last in segments:
            page = self.grants[ref][2] - (self.front.data(0) >> 12)
            at, length = page * PAGE + first * SECTOR, (last - first + 1) * SECTOR
            if request.operation == READ:
                self.pages[at:at + length] = self.disk[sector * SECTOR:sector * SECTOR + length]
            elif 0 <= page < DATA:
                self.disk[sector * SECTOR:sector * SECTOR + length] = self.pages[at:at + length]
            else:  # written from a frame outside the data pages: read it as it is
                frame = self.grants[ref][2] * PAGE + first * SECTOR
                self.disk[sector * SECTOR:sector * SECTOR + length] = \
                    self.front.memory.read_phys(frame, length)
            sector += last - first + 1


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    return tmp_path_factory.mktemp("blkfuzz") / "disk.img"


@settings(max_examples=examples(100), suppress_health_check=[HealthCheck.too_slow])
@given(entries=grant_entries(), script=steps())
def test_a_hostile_frontend_changes_only_what_valid_requests_name(idle_guest, image_path,
                                                                   entries, script):
    disk_file(image_path, SECTORS)
    with DiskImage.open(image_path, snapshot=False) as disk:
        front = Frontend(boot_with_disk(idle_guest, disk))
        front.connect()
        model = Model(front, image_path.read_bytes(), entries)
        for kind, step in script:
            if kind == "overflow":
                front.req_prod_pvt += step
                front.push()
                assert front.domain.blkback.device.broken
                break
            front.queue(step)
            front.push()
            responses = front.responses()
            expected = model.status(step)
            assert [(r[0], r[2]) for r in responses] == [(step.id, expected)]
            assert responses[0][1] == step.operation
            assert image_path.read_bytes() == bytes(model.disk)
            assert front.memory.read_phys(front.data(0), DATA * PAGE) == bytes(model.pages)
        assert image_path.read_bytes() == bytes(model.disk)
        assert not any(struct.unpack("<H", front.memory.read_phys(front.table + 8 * ref, 2))[0]
                       & (8 | 16) for ref in REFS)  # no grant left in use
