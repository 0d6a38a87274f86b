"""A client of the store: a domain's ring (ring.py) or an in-process backend
(client.py). The store answers it through `deliver`; it owns its open transactions."""

from abc import ABC, abstractmethod

from pvtool.hv.xenstore.transactions import Transaction
from pvtool.hv.xenstore.wire import Message


class Connection(ABC):
    def __init__(self, domid: int):
        self.domid = domid
        self.transactions: dict[int, Transaction] = {}

    @abstractmethod
    def deliver(self, message: Message) -> None:
        """A reply or a watch event for this client."""
