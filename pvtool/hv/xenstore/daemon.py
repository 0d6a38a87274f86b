"""The store started for a booted PV domain: the toolstack's nodes written, the
domain's ring served on its store event channel, and domain 0's connection left for
in-process backends (blkback follows a frontend's state through it)."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pvtool.hv.xenstore.client import StoreClient
from pvtool.hv.xenstore.ring import StoreRing
from pvtool.hv.xenstore.store import XenStore
from pvtool.hv.xenstore.toolstack import DomainConfig, write_domain
from pvtool.x86.paging import PAGE_SIZE

if TYPE_CHECKING:
    from pvtool.hv.domain import PvDomain


@dataclass(frozen=True)
class XenStoreDaemon:
    store: XenStore
    ring: StoreRing  # the guest's connection
    backend: StoreClient  # domain 0's, for backends in Python
    config: DomainConfig


def start_xenstore(domain: "PvDomain", config: DomainConfig) -> XenStoreDaemon:
    store = XenStore()
    backend = StoreClient(store)
    write_domain(backend, config)
    domain.pagetables.hold_writable(config.store_mfn)  # the daemon writes the page
    ring = StoreRing(store, config.domid, domain.memory, config.store_mfn * PAGE_SIZE,
                     lambda: domain.events.set_pending(config.store_port))
    domain.events.connect(config.store_port, ring)
    return XenStoreDaemon(store, ring, backend, config)
