"""The XenStore wire codec (io/xs_wire.h): a message is a 16-byte xsd_sockmsg header
(type, req_id, tx_id, len) and `len` bytes of payload. The ring carries a byte stream,
so a message arrives in pieces cut anywhere; MessageReader puts them back together."""

from dataclasses import dataclass

from pvtool.abi.xs_wire import XENSTORE_PAYLOAD_MAX, XSD_SOCKMSG, XsType
from pvtool.hv.xenstore.errors import XenStoreError

HEADER_SIZE = XSD_SOCKMSG.size
OK = b"OK\0"  # the payload of every plain acknowledgement


@dataclass(frozen=True)
class Message:
    type: int
    req_id: int
    tx_id: int
    payload: bytes

    def encode(self) -> bytes:
        return XSD_SOCKMSG.pack(self.type, self.req_id, self.tx_id,
                                len(self.payload)) + self.payload

    def reply(self, payload: bytes, type: int | None = None) -> "Message":
        """A reply carries the request's type (or XS_ERROR), req_id and tx_id."""
        return Message(self.type if type is None else type, self.req_id, self.tx_id, payload)

    def error(self, name: str) -> "Message":
        return self.reply(name.encode() + b"\0", XsType.error)


class OversizedMessage(Exception):
    """A header announcing more than XENSTORE_PAYLOAD_MAX bytes: the stream cannot be
    resynchronised, so the daemon stops serving the connection (xenstored_core.c
    handle_input: "Client tried to feed us", XENSTORE_ERROR_PROTO)."""


class MessageReader:
    """Collects a byte stream into messages. `wanted` says how many more bytes finish
    the header or payload under way, so a caller can take no more than that."""

    def __init__(self):
        self._buffer = bytearray()
        self._length: int | None = None  # the payload length, once the header is in

    @property
    def wanted(self) -> int:
        if self._length is None:
            return HEADER_SIZE - len(self._buffer)
        return HEADER_SIZE + self._length - len(self._buffer)

    @property
    def partial(self) -> bool:
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        """Every message DATA completes; raises OversizedMessage on a header whose
        length passes XENSTORE_PAYLOAD_MAX."""
        messages = []
        view = memoryview(data)
        while view:
            take = min(self.wanted, len(view))
            self._buffer += view[:take]
            view = view[take:]
            if self._length is None and len(self._buffer) == HEADER_SIZE:
                self._length = XSD_SOCKMSG.unpack(self._buffer)[3]
                if self._length > XENSTORE_PAYLOAD_MAX:
                    raise OversizedMessage(f"a message of {self._length} bytes")
            if self._length is not None and self.wanted == 0:
                messages.append(self._finish())
        return messages

    def _finish(self) -> Message:
        kind, req_id, tx_id, _ = XSD_SOCKMSG.unpack_from(self._buffer)
        message = Message(kind, req_id, tx_id, bytes(self._buffer[HEADER_SIZE:]))
        self._buffer.clear()
        self._length = None
        return message


def split_strings(payload: bytes, count: int) -> list[bytes]:
    """COUNT NUL-terminated strings making up PAYLOAD exactly, else EINVAL (xenstored's
    get_strings/onearg)."""
    parts = payload.split(b"\0")
    if len(parts) != count + 1 or parts[-1] != b"":
        raise XenStoreError("EINVAL", f"expected {count} NUL-terminated strings")
    return parts[:-1]


def path_and_value(payload: bytes) -> tuple[bytes, bytes]:
    """WRITE's payload: a NUL-terminated path, then the value up to the message's end."""
    path, nul, value = payload.partition(b"\0")
    if not nul:
        raise XenStoreError("EINVAL", "no NUL after the path")
    return path, value
