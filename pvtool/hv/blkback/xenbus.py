"""blkback's side of the XenbusState handshake (io/xenbus.h, the state diagram of
io/blkif.h), as Linux's blkback follows it (drivers/block/xen-blkback/xenbus.c).

At start the backend opens nothing new (the disk is the run's, opened and closed by
it) and publishes the device in one transaction (feature-flush-cache, sectors,
sector-size, info), then InitWait. When the frontend reaches Initialised or Connected
(Mini-OS jumps straight to Connected) it reads ring-ref, event-channel and protocol
(x86_32-abi when absent; any other ABI is refused), maps the ring through the grant
and binds the port, then goes Connected. Closing is echoed; at Closed the ring and
the port are let go and the backend is Closed; Initialising after that means the
frontend will reconnect, and the backend waits in InitWait again (frontend_changed).

Whatever the frontend got wrong ends as xenbus_dev_fatal does: "<errno> <message>" in
the backend's error node (/local/domain/0/error/backend/vbd/...) and state Closing.
"""

from contextlib import ExitStack
from typing import TYPE_CHECKING

from pvtool.abi.blkif import VDISK_READONLY, XEN_IO_PROTO_ABI_X86_32
from pvtool.abi.xen import BACKEND_DOMID, Errno
from pvtool.abi.xs_wire import XenbusState
from pvtool.hv.blkback.device import BlockDevice
from pvtool.hv.errors import HypercallError
from pvtool.hv.grants import GrantRefused
from pvtool.hv.xenstore.client import StoreClient
from pvtool.hv.xenstore.errors import XenStoreError
from pvtool.hv.xenstore.paths import domain_path
from pvtool.hv.xenstore.toolstack import vbd_backend, vbd_frontend
from pvtool.machine.disk import SECTOR_SIZE, DiskImage
from pvtool.x86.paging import PAGE_SHIFT

if TYPE_CHECKING:
    from pvtool.hv.domain import PvDomain


class HandshakeError(Exception):
    """What xenbus_dev_fatal reports: an errno and a message."""

    def __init__(self, errno: Errno, message: str):
        super().__init__(message)
        self.errno = errno


class Blkback:
    """The backend of DOMAIN's xvda, served from DISK, speaking through XS (domain
    0's store connection)."""

    def __init__(self, domain: "PvDomain", disk: DiskImage, xs: StoreClient):
        self.domain = domain
        self.disk = disk
        self.xs = xs
        self.front = vbd_frontend(domain.domid)
        self.back = vbd_backend(domain.domid)
        self.readonly = self._read(self.back, "mode", "w") != "w"  # libxl's mode
        self.device: BlockDevice | None = None
        self._connection = ExitStack()  # the ring's grant, its frame held, the port

    def start(self) -> None:
        with self.xs.transaction():
            self._write("feature-flush-cache", 1)
            self._write("sectors", self.disk.sectors)
            self._write("sector-size", SECTOR_SIZE)
            self._write("info", VDISK_READONLY if self.readonly else 0)
        self._switch(XenbusState.init_wait)
        self.xs.watch(f"{self.front}/state", self._frontend_changed)

    @property
    def state(self) -> int:
        return int(self._read(self.back, "state", "0"))

    def _frontend_changed(self, _path: str) -> None:
        try:
            front = int(self._read(self.front, "state", "0"))
        except ValueError:
            return  # not a state: nothing to follow
        if front in (XenbusState.initialised, XenbusState.connected):
            if self.state != XenbusState.connected:
                self._connect()
        elif front == XenbusState.closing:
            self._switch(XenbusState.closing)
        elif front == XenbusState.closed:
            self.disconnect()
            self._switch(XenbusState.closed)
        elif front == XenbusState.initialising and self.state == XenbusState.closed:
            self._switch(XenbusState.init_wait)

    def _connect(self) -> None:
        self.disconnect()
        try:
            self.device = self._connect_ring()
        except HandshakeError as error:
            self.disconnect()
            self._fatal(error)
            return
        self._switch(XenbusState.connected)

    def _connect_ring(self) -> BlockDevice:
        """connect_ring: the frontend's keys read, the ring mapped, the port bound."""
        ring_ref = self._frontend_number("ring-ref")
        port = self._frontend_number("event-channel")
        protocol = self._read(self.front, "protocol", XEN_IO_PROTO_ABI_X86_32)
        if protocol != XEN_IO_PROTO_ABI_X86_32:
            raise HandshakeError(Errno.ENOSYS, f"unknown fe protocol {protocol}")
        grants, pagetables = self.domain.grants, self.domain.pagetables
        try:
            page = grants.map(ring_ref, write=True)
        except GrantRefused as refusal:
            raise HandshakeError(Errno.EINVAL, f"mapping ring-ref {ring_ref} port {port}: "
                                 f"{refusal.why}") from None
        self._connection.callback(grants.unmap, ring_ref, write=True)
        pagetables.hold_writable(page >> PAGE_SHIFT)  # a mapped grant stays writable
        self._connection.callback(pagetables.drop_writable, page >> PAGE_SHIFT)
        device = BlockDevice(self.domain.memory, page, grants, self.disk,
                             readonly=self.readonly, notify=lambda: channel.send(),
                             log=self.domain.log)
        try:
            channel = self.domain.events.bind_backend(port, device)
        except HypercallError as error:
            raise HandshakeError(error.errno, f"binding port {port}: {error}") from None
        self._connection.callback(channel.close)
        return device

    def disconnect(self) -> None:
        """xen_blkif_disconnect: the port closed, the ring's grant let go (idempotent)."""
        self.device = None
        self._connection.close()

    # -- the store -----------------------------------------------------------------
    def _read(self, directory: str, key: str, default: str) -> str:
        try:
            return self.xs.read(f"{directory}/{key}").decode("ascii", "replace")
        except XenStoreError:
            return default

    def _frontend_number(self, key: str) -> int:
        value = self._read(self.front, key, "")
        if not value.isdigit():
            raise HandshakeError(Errno.EINVAL, f"reading {self.front}/{key}")
        return int(value)

    def _write(self, key: str, value: object) -> None:
        self.xs.write(f"{self.back}/{key}", str(value).encode())

    def _switch(self, state: XenbusState) -> None:
        self._write("state", int(state))

    def _fatal(self, error: HandshakeError) -> None:
        """xenbus_dev_fatal: the reason under error/<the backend's node>, then Closing."""
        home = domain_path(BACKEND_DOMID)
        self.xs.write(f"{home}/error{self.back[len(home):]}/error",
                      f"{int(error.errno)} {error}".encode())
        self.domain.log(f"blkback: {error}")
        self._switch(XenbusState.closing)


def start_blkback(domain: "PvDomain", disk: DiskImage) -> Blkback:
    """The backend of the run's first disk, on domain 0's store connection."""
    backend = Blkback(domain, disk, domain.xenstore.backend)
    backend.start()
    return backend
