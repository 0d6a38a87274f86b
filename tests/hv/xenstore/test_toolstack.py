"""The nodes the toolstack writes for domain 1, as libxl does (libxl_create.c,
libxl_dom.c, libxl_disk.c, libxl_device.c), and who may read and write them."""

from pvtool.hv.xenstore.client import StoreClient
from pvtool.hv.xenstore.perms import Perm
from pvtool.hv.xenstore.store import XenStore
from pvtool.hv.xenstore.toolstack import DomainConfig, write_domain
from tests.hv.xenstore.conftest import CONFIG

FRONT = "/local/domain/1/device/vbd/51712"
BACK = "/local/domain/0/backend/vbd/1/51712"


def test_the_domain_directory_holds_its_identity_memory_store_and_console(dom0):
    assert dom0.read("/local/domain/1/name") == b"guest"
    assert dom0.read("/local/domain/1/domid") == b"1"
    vm = dom0.read("/local/domain/1/vm").decode()
    assert dom0.read(vm + "/name") == b"guest"
    assert dom0.read("/local/domain/1/memory/target") == b"131072"
    assert dom0.read("/local/domain/1/store/port") == b"1"
    assert dom0.read("/local/domain/1/store/ring-ref") == b"256"
    assert dom0.read("/local/domain/1/console/port") == b"2"
    assert dom0.read("/local/domain/1/console/ring-ref") == b"257"
    assert dom0.read("/local/domain/1/console/type") == b"xenconsoled"


def test_the_vbd_frontend_and_backend_start_initialising_and_name_each_other(dom0):
    assert dom0.read(FRONT + "/backend") == BACK.encode()
    assert dom0.read(FRONT + "/backend-id") == b"0"
    assert dom0.read(FRONT + "/virtual-device") == b"51712"  # xvda: 202 << 8
    assert dom0.read(FRONT + "/device-type") == b"disk"
    assert dom0.read(FRONT + "/state") == dom0.read(BACK + "/state") == b"1"
    assert dom0.read(BACK + "/frontend") == FRONT.encode()
    assert dom0.read(BACK + "/frontend-id") == b"1"
    assert dom0.read(BACK + "/params") == b"/images/disk.img"
    assert dom0.read(BACK + "/mode") == b"w"


def test_the_frontend_directory_is_the_guests_and_the_backend_directory_domain_0s(dom0):
    assert dom0.directory(FRONT) == ["backend", "backend-id", "state", "virtual-device",
                                     "device-type", "trusted", "protocol"]
    assert dom0.get_perms(FRONT) == (Perm("n", 1), Perm("r", 0))
    assert dom0.get_perms(BACK) == (Perm("n", 0), Perm("r", 1))
    assert dom0.get_perms("/local/domain/1") == (Perm("n", 0), Perm("r", 1))
    assert dom0.get_perms("/local/domain/1/data") == (Perm("n", 1),)


def test_a_run_without_a_disk_has_no_vbd():
    store = XenStore()
    client = StoreClient(store)
    write_domain(client, DomainConfig(**{**CONFIG.__dict__, "disk": None}))
    assert "vbd" not in client.directory("/local/domain/1/device")
    assert client.directory("/local/domain") == ["1"]
