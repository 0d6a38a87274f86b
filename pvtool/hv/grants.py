"""Grant tables, version 1 (xen/include/public/grant_table.h; Xen's
common/grant_table.c): how a domain lets a backend reach a page of its memory.

The domain writes entries {flags, domid, frame} into the table's frames, which are
the hypervisor's (layout.GRANT_FRAMES) and shared with it, as shared_info is: it
learns their numbers from GNTTABOP_setup_table and maps them writable itself. An entry
says "domain DOMID may use my frame FRAME": GTF_permit_access, and GTF_readonly if
only for reading.

A backend in the hypervisor (blkback) uses a grant through `access` or the two copies
built on it, with Xen's checks (_set_status_v1, acquire_grant_for_copy):

    try:
        grants.copy_to(ref, offset, data)       # disk -> guest (a blkif READ)
        data = grants.copy_from(ref, offset, n)  # guest -> disk (a blkif WRITE)
    except GrantRefused as refusal:              # refusal.status is Xen's GNTST_*
        ...answer the request with an error

The ref must lie in the table, the entry be GTF_permit_access to the backend's domain
(BACKEND_DOMID), not GTF_readonly when the backend writes, and name a frame of the
domain's; a write into a frame in use as a page table is refused, as Xen's
get_page_type(PGT_writable_page) refuses it. While the access lasts the entry carries
GTF_reading (and GTF_writing), cleared when the last access of that kind ends. The
guest never runs during one, so Xen's bounded cmpxchg retries have nothing to race.
"""

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pvtool.abi.layouts import GRANT_ENTRY_V1
from pvtool.abi.xen import (
    BACKEND_DOMID,
    GTF_PERMIT_ACCESS,
    GTF_READING,
    GTF_READONLY,
    GTF_TYPE_MASK,
    GTF_WRITING,
    GrantStatus,
)
from pvtool.hv import layout
from pvtool.hv.frames import is_table
from pvtool.x86.paging import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from pvtool.hv.domain import Domain

ENTRIES_PER_FRAME = PAGE_SIZE // GRANT_ENTRY_V1.size  # 512
INITIAL_FRAMES = 1  # x86's INITIAL_NR_GRANT_FRAMES: the table a domain starts with
FLAGS = GRANT_ENTRY_V1.offset("flags")


class GrantRefused(Exception):
    """A grant that may not be used as asked; STATUS is Xen's GNTST_* for it."""

    def __init__(self, status: GrantStatus, why: str):
        super().__init__(why)
        self.status = status
        self.why = why


class GrantTable:
    """One domain's v1 grant table: its frames, grown on request up to
    layout.MAX_GRANT_FRAMES and never shrunk (gnttab_grow_table), and the accesses in
    progress (Xen's active entries: who pins each ref, and how)."""

    version = 1  # the only version this hypervisor offers (as Xen with gnttab=max-ver:1)
    max_frames = layout.MAX_GRANT_FRAMES

    def __init__(self, domain: "Domain"):
        self.domain = domain
        self.memory = domain.memory
        self.nr_frames = 0
        self._pins: dict[int, tuple[int, int, int]] = {}  # ref -> (domid, readers, writers)
        self.grow(INITIAL_FRAMES)

    def frame(self, index: int) -> int:
        """The machine frame of the table's INDEXth frame."""
        return (layout.GRANT_FRAMES >> PAGE_SHIFT) + index

    @property
    def nr_entries(self) -> int:
        return self.nr_frames * ENTRIES_PER_FRAME

    def grow(self, nr_frames: int) -> None:
        """Give the table NR_FRAMES frames (at most max_frames), each shared with the
        domain so it may map it writable (share_xen_page_with_guest, SHARE_rw)."""
        for index in range(self.nr_frames, nr_frames):
            self.domain.frames.share(self.frame(index), self.domain.domid)
        self.nr_frames = max(self.nr_frames, nr_frames)

    def _entry_address(self, ref: int) -> int:
        return layout.GRANT_FRAMES + ref * GRANT_ENTRY_V1.size

    def entry(self, ref: int) -> dict:
        """Grant REF's entry as the domain wrote it: flags, domid, frame."""
        return GRANT_ENTRY_V1.unpack(self.memory.read_phys(self._entry_address(ref),
                                                            GRANT_ENTRY_V1.size))

    # -- using a grant ---------------------------------------------------------------
    @contextmanager
    def access(self, ref: int, *, write: bool, domid: int = BACKEND_DOMID) -> Iterator[int]:
        """Use grant REF as domain DOMID, for writing into the granted frame if WRITE;
        yield the frame's machine address. Raises GrantRefused with Xen's status."""
        frame = self.map(ref, write=write, domid=domid)
        try:
            yield frame
        finally:
            self.unmap(ref, write=write)

    def map(self, ref: int, *, write: bool, domid: int = BACKEND_DOMID) -> int:
        """Use grant REF as domain DOMID until `unmap` (a backend's ring, mapped for as
        long as it is connected, as GNTTABOP_map_grant_ref pins it); the granted
        frame's machine address. Raises GrantRefused with Xen's status."""
        self._pin(ref, domid, write)
        try:
            return self._granted_frame(ref, write) << PAGE_SHIFT
        except GrantRefused:
            self._unpin(ref, write)
            raise

    def unmap(self, ref: int, *, write: bool) -> None:
        """End one use of REF that `map` began."""
        self._unpin(ref, write)

    def copy_to(self, ref: int, offset: int, data: bytes, *, domid: int = BACKEND_DOMID) -> None:
        """Write DATA at OFFSET of the frame grant REF lets DOMID write."""
        check_span(offset, len(data))
        with self.access(ref, write=True, domid=domid) as frame:
            self.memory.write_phys(frame + offset, data)

    def copy_from(self, ref: int, offset: int, length: int, *,
                  domid: int = BACKEND_DOMID) -> bytes:
        """LENGTH bytes at OFFSET of the frame grant REF lets DOMID read."""
        check_span(offset, length)
        with self.access(ref, write=False, domid=domid) as frame:
            return self.memory.read_phys(frame + offset, length)

    def _pin(self, ref: int, domid: int, write: bool) -> None:
        """Check the entry and set GTF_reading/GTF_writing (_set_status_v1); a ref
        already in use is checked against the domain using it."""
        if not 0 <= ref < self.nr_entries:
            raise GrantRefused(GrantStatus.bad_gntref, f"grant ref {ref:#x} is past the "
                               f"table's {self.nr_entries} entries")
        entry = self.entry(ref)
        pinned = self._pins.get(ref)
        if pinned is not None and pinned[0] != domid:
            raise GrantRefused(GrantStatus.general_error,
                               f"grant {ref} is in use by domain {pinned[0]}")
        if pinned is None and (entry["flags"] & GTF_TYPE_MASK != GTF_PERMIT_ACCESS
                               or entry["domid"] != domid):
            raise GrantRefused(GrantStatus.general_error,
                               f"grant {ref}: flags {entry['flags']:#x} for domain "
                               f"{entry['domid']}, not access for domain {domid}")
        if write and entry["flags"] & GTF_READONLY:
            raise GrantRefused(GrantStatus.general_error, f"grant {ref} is read-only")
        _, readers, writers = pinned or (domid, 0, 0)
        self._pins[ref] = (domid, readers + (not write), writers + write)
        self._set_flags(ref, entry["flags"] | GTF_READING | (GTF_WRITING if write else 0))

    def _unpin(self, ref: int, write: bool) -> None:
        """Drop one access; clear GTF_writing with the last writer and GTF_reading
        with the last access (release_grant_for_copy)."""
        domid, readers, writers = self._pins.pop(ref)
        readers -= not write
        writers -= write
        if readers + writers:
            self._pins[ref] = (domid, readers, writers)
        clear = (0 if writers else GTF_WRITING) | (0 if readers + writers else GTF_READING)
        self._set_flags(ref, self.entry(ref)["flags"] & ~clear)

    def _set_flags(self, ref: int, flags: int) -> None:
        self.memory.write_phys(self._entry_address(ref) + FLAGS, struct.pack("<H", flags))

    def _granted_frame(self, ref: int, write: bool) -> int:
        return self.usable_frame(self.entry(ref)["frame"], write)

    def usable_frame(self, frame: int, write: bool) -> int:
        """FRAME, if the domain's (get_paged_frame: GNTST_bad_page) and, for a write,
        no page table (get_page_type(PGT_writable_page) fails)."""
        if not self.domain.owns_frame(frame):
            raise GrantRefused(GrantStatus.bad_page, f"frame {frame:#x} is not the domain's")
        if write and is_table(self.domain.frames.type_info(frame)):
            raise GrantRefused(GrantStatus.general_error,
                               f"frame {frame:#x} is a page table, not writable")
        return frame


def check_span(offset: int, length: int) -> None:
    """A copy stays inside one page (gnttab_copy_buf: GNTST_bad_copy_arg)."""
    if offset < 0 or length < 0 or offset + length > PAGE_SIZE:
        raise GrantRefused(GrantStatus.bad_copy_arg,
                           f"{length} bytes at offset {offset} cross the page")
