"""A booted PV domain's store: the ring at start_info.store_mfn served on
start_info.store_evtchn, whose send runs the daemon and whose reply raises the port."""

from pvtool.abi.layouts import START_INFO
from pvtool.abi.layouts import XENSTORE_DOMAIN_INTERFACE as RING
from pvtool.abi.xs_wire import XsType
from pvtool.hv.builder import STORE_EVTCHN
from pvtool.hv.xenstore.wire import Message, MessageReader
from pvtool.machine.cpu import ESI
from pvtool.x86.paging import PAGE_SIZE


def test_a_send_on_the_store_port_is_answered_in_the_ring_and_raises_the_port(idle):
    memory, domain = idle.memory, idle.domain
    # ESI holds start_info at the entry; the test guests' VIRT_BASE is 0.
    info = START_INFO.unpack(memory.read_phys(idle.cpu.read(ESI), START_INFO.size))
    assert info["store_evtchn"] == STORE_EVTCHN
    page = info["store_mfn"] * PAGE_SIZE
    request = Message(XsType.read, 3, 0, b"domid\0").encode()
    memory.write_phys(page + RING.offset("req"), request)
    memory.write_u32(page + RING.offset("req_prod"), len(request))

    domain.events.send(STORE_EVTCHN)

    produced = memory.read_u32(page + RING.offset("rsp_prod"))
    replies = MessageReader().feed(memory.read_phys(page + RING.offset("rsp"), produced))
    assert replies == [Message(XsType.read, 3, 0, b"1")]
    assert memory.read_u32(page + RING.offset("req_cons")) == len(request)
    assert domain.events.is_pending(STORE_EVTCHN)


def test_the_domain_is_named_after_its_image_and_has_no_vbd_without_a_disk(idle, idle_guest):
    backend = idle.domain.xenstore.backend
    assert backend.read("/local/domain/1/name") == idle_guest.elf.stem.encode()
    assert "vbd" not in backend.directory("/local/domain/1/device")
