"""XenStore's wire protocol and ring, from xen/include/public/io/xs_wire.h and
docs/misc/xenstore-ring.txt, and the XenbusState values of io/xenbus.h."""

import struct
from enum import IntEnum


class XsType(IntEnum):
    """enum xsd_sockmsg_type."""

    control = 0  # alias XS_DEBUG
    directory = 1
    read = 2
    get_perms = 3
    watch = 4
    unwatch = 5
    transaction_start = 6
    transaction_end = 7
    introduce = 8
    release = 9
    get_domain_path = 10
    write = 11
    mkdir = 12
    rm = 13
    set_perms = 14
    watch_event = 15
    error = 16
    is_domain_introduced = 17
    resume = 18
    set_target = 19
    # 20 was XS_RESTRICT, removed
    reset_watches = 21
    directory_part = 22
    get_feature = 23
    set_feature = 24
    get_quota = 25
    set_quota = 26
    invalid = 0xFFFF


# xsd_errors: the names an XS_ERROR reply carries, in the header's order.
XS_ERRORS = ("EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
             "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM")

# struct xsd_sockmsg: type, req_id, tx_id, len; then len bytes of payload.
XSD_SOCKMSG = struct.Struct("<IIII")

XENSTORE_PAYLOAD_MAX = 4096  # most bytes after the header, either direction
XENSTORE_ABS_PATH_MAX = 3072
XENSTORE_REL_PATH_MAX = 2048

XENSTORE_RING_SIZE = 1024  # each of req[] and rsp[]; a stream byte x lives at x & 1023

XENSTORE_SERVER_FEATURE_RECONNECTION = 1
XENSTORE_SERVER_FEATURE_ERROR = 2  # the server reports why it stopped in `error`
XENSTORE_CONNECTED = 0


class XenstoreRingError(IntEnum):
    """Values of the ring's `error` field (XENSTORE_ERROR_*)."""

    none = 0
    comm = 1  # the event channel does not work
    ringidx = 2  # an inconsistent producer or consumer index
    proto = 3  # a protocol violation: a message longer than XENSTORE_PAYLOAD_MAX


class XenbusState(IntEnum):
    """enum xenbus_state (io/xenbus.h)."""

    unknown = 0
    initialising = 1
    init_wait = 2
    initialised = 3
    connected = 4
    closing = 5
    closed = 6
    reconfiguring = 7
    reconfigured = 8
