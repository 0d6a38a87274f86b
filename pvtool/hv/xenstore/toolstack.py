"""The nodes a toolstack writes for a new domain, as libxl does for a PV guest with one
console and, when the run has a disk, one block device (libxl_create.c
libxl__domain_make, libxl_dom.c libxl__build_post, libxl_disk.c and libxl_device.c
libxl__device_generic_add; docs/misc/xenstore-paths.pandoc).

The guest is domain GUEST_DOMID, the first domU as xl numbers it; its backends are
domain 0's, as in-process Python (hv/), so backend paths sit under /local/domain/0.
The domain's directory is domain 0's and readable by the guest; the directories a
guest fills in (data, control/shutdown, the device frontends...) are its own."""

from dataclasses import dataclass
from pathlib import Path

from pvtool.abi.blkif import XEN_IO_PROTO_ABI_X86_32
from pvtool.abi.xen import BACKEND_DOMID, GUEST_DOMID, HARDWARE_DOMID
from pvtool.abi.xs_wire import XenbusState
from pvtool.hv.xenstore.client import StoreClient
from pvtool.hv.xenstore.paths import domain_path
from pvtool.hv.xenstore.perms import Perm

# The block device's id: xvda, 202 << 8 | disk << 4 | partition (xen-vbd-interface.7).
XVDA = 202 << 8
CONSOLE_LIMIT = 1048576  # libxl's console/limit: bytes xenconsoled buffers
GUEST_OWNED = ("data", "drivers", "feature", "attr", "error", "control/shutdown",
               "device/suspend/event-channel")


@dataclass(frozen=True)
class DomainConfig:
    name: str
    memory_kib: int
    store_port: int
    store_mfn: int
    console_port: int
    console_mfn: int
    disk: Path | None = None  # the file behind xvda, if the run has one
    domid: int = GUEST_DOMID

    @property
    def path(self) -> str:
        return domain_path(self.domid)

    @property
    def uuid(self) -> str:
        return f"00000000-0000-0000-0000-{self.domid:012x}"


def vbd_frontend(domid: int = GUEST_DOMID) -> str:
    return f"{domain_path(domid)}/device/vbd/{XVDA}"


def vbd_backend(domid: int = GUEST_DOMID) -> str:
    return f"{domain_path(BACKEND_DOMID)}/backend/vbd/{domid}/{XVDA}"


def write_domain(xs: StoreClient, config: DomainConfig) -> None:
    """CONFIG's nodes, written as domain 0 in one transaction, as libxl does."""
    with xs.transaction():
        _domain_nodes(xs, config)
        _console_nodes(xs, config)
        if config.disk is not None:
            _vbd_nodes(xs, config)


def _owner_reads(owner: int, reader: int) -> tuple[Perm, ...]:
    return (Perm("n", owner), Perm("r", reader))


def _write_all(xs: StoreClient, directory: str, values: dict[str, object]) -> None:
    for key, value in values.items():
        xs.write(f"{directory}/{key}", str(value).encode())


def _domain_nodes(xs: StoreClient, config: DomainConfig) -> None:
    vm = f"/vm/{config.uuid}"
    for directory in (config.path, vm):
        xs.mkdir(directory)
        xs.set_perms(directory, _owner_reads(HARDWARE_DOMID, config.domid))
    _write_all(xs, vm, {"name": config.name, "uuid": config.uuid})
    for directory in ("device", "control"):
        xs.mkdir(f"{config.path}/{directory}")
    for directory in GUEST_OWNED:
        xs.mkdir(f"{config.path}/{directory}")
        xs.set_perms(f"{config.path}/{directory}", (Perm("n", config.domid),))
    _write_all(xs, config.path, {
        "name": config.name, "domid": config.domid, "vm": vm,
        "memory/static-max": config.memory_kib, "memory/target": config.memory_kib,
        "store/port": config.store_port, "store/ring-ref": config.store_mfn,
    })


def _console_nodes(xs: StoreClient, config: DomainConfig) -> None:
    _write_all(xs, f"{config.path}/console", {
        "backend-id": BACKEND_DOMID, "limit": CONSOLE_LIMIT, "type": "xenconsoled",
        "output": "pty", "port": config.console_port, "ring-ref": config.console_mfn,
    })


def _vbd_nodes(xs: StoreClient, config: DomainConfig) -> None:
    """The frontend's directory (the guest's, readable by the backend) and the
    backend's (domain 0's, readable by the guest), both in XenbusState Initialising."""
    front, back = vbd_frontend(config.domid), vbd_backend(config.domid)
    for directory, owner, reader in ((front, config.domid, BACKEND_DOMID),
                                     (back, BACKEND_DOMID, config.domid)):
        xs.mkdir(directory)
        xs.set_perms(directory, _owner_reads(owner, reader))
    _write_all(xs, front, {
        "backend": back, "backend-id": BACKEND_DOMID, "state": int(XenbusState.initialising),
        "virtual-device": XVDA, "device-type": "disk", "trusted": 1,
        "protocol": XEN_IO_PROTO_ABI_X86_32,
    })
    _write_all(xs, back, {
        "frontend": front, "frontend-id": config.domid, "online": 1,
        "state": int(XenbusState.initialising), "removable": 0, "bootable": 1, "dev": "xvda",
        "type": "file", "mode": "w", "device-type": "disk", "params": config.disk,
        "discard-enable": 0,
    })
