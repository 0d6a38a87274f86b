"""The block-device interface of split drivers: xen/include/public/io/blkif.h on the
shared ring of io/ring.h (DEFINE_RING_TYPES), in the x86_32 layout (a u64 aligned to
4 bytes, as gcc -m32 packs it; Linux blkback's blkif_x86_32_request), and the
XenStore keys a frontend and its backend exchange."""

from enum import IntEnum

from pvtool.abi.layouts import layout


class BlkifOp(IntEnum):
    """BLKIF_OP_*: a request's operation."""

    read = 0
    write = 1
    write_barrier = 2
    flush_diskcache = 3
    reserved_1 = 4  # SLES's, never a standard operation
    discard = 5
    indirect = 6


class BlkifStatus(IntEnum):
    """BLKIF_RSP_*: a response's status."""

    okay = 0
    error = -1
    eopnotsupp = -2


BLKIF_MAX_SEGMENTS_PER_REQUEST = 11
# info's bits (blkif.h VDISK_*): what the backend tells the frontend of the disk.
VDISK_CDROM = 1
VDISK_REMOVABLE = 2
VDISK_READONLY = 4
# The ABI a frontend's `protocol` key names (io/protocols.h); a backend assumes
# x86_32 when the key is missing (Linux blkback's BLKIF_PROTOCOL_DEFAULT on x86).
XEN_IO_PROTO_ABI_X86_32 = "x86_32-abi"

# The shared ring's page (io/ring.h struct *_sring): four indexes, padding to 64
# bytes, then ring[], a power of two of request/response unions.
SRING_HEADER = layout("sring", 64, req_prod=(0, "I"), req_event=(4, "I"),
                      rsp_prod=(8, "I"), rsp_event=(12, "I"))
BLKIF_SEGMENT = layout("blkif_request_segment", 8, gref=(0, "I"), first_sect=(4, "B"),
                       last_sect=(5, "B"))
# Every request's id sits at offset 4 on x86_32 (rw, discard, indirect and "other"
# alike: blkif_get_x86_32_req), so this layout reads the id of any request.
BLKIF_REQUEST_32 = layout(
    "blkif_request", 108, operation=(0, "B"), nr_segments=(1, "B"), handle=(2, "H"),
    id=(4, "Q"), sector_number=(12, "Q"),
    seg=(20, f"{BLKIF_MAX_SEGMENTS_PER_REQUEST * BLKIF_SEGMENT.size}s"))
BLKIF_RESPONSE_32 = layout("blkif_response", 12, id=(0, "Q"), operation=(8, "B"),
                           status=(10, "h"))


def ring_entries(page_size: int, entry_size: int) -> int:
    """__RING_SIZE: as many entries as fit after the header, rounded down to a power
    of two (32 for blkif on a 4 KiB page)."""
    fit = (page_size - SRING_HEADER.size) // entry_size
    return 1 << (fit.bit_length() - 1)
