"""A store holding the toolstack's nodes for domain 1 (one console, one disk), with
domain 0's connection (`dom0`) and domain 1's ring (`guest`)."""

from pathlib import Path

import pytest

from pvtool.hv.xenstore.client import StoreClient
from pvtool.hv.xenstore.store import XenStore
from pvtool.hv.xenstore.toolstack import DomainConfig, write_domain
from tests.hv.xenstore.guestside import GuestSide

CONFIG = DomainConfig(name="guest", memory_kib=131072, store_port=1, store_mfn=0x100,
                      console_port=2, console_mfn=0x101, disk=Path("/images/disk.img"))


@pytest.fixture
def store():
    store = XenStore()
    write_domain(StoreClient(store), CONFIG)
    return store


@pytest.fixture
def dom0(store):
    return StoreClient(store)


@pytest.fixture
def guest(store):
    return GuestSide(store, domid=CONFIG.domid)
