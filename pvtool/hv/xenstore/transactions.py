"""Transactions (docs/misc/xenstore.txt, TRANSACTION_START/END; xenstored_transaction.c).

A transaction works on its own copy of the tree, so it sees its own writes and nobody
else sees them until it commits. It records every node it looked at or changed with
that node's generation when it first did. At commit, if any of those nodes has since
changed in the store (another client wrote, made or removed it), the commit fails with
EAGAIN and the client retries, as cxenstored and oxenstored answer; otherwise its
changes are copied into the store and the watches fire for them then."""

from pvtool.hv.xenstore.errors import XenStoreError
from pvtool.hv.xenstore.tree import Change, Tree

# quota_max_transaction: transactions one connection may hold open at once
# (xenstored_core.c, default 10); one more gets ENOSPC.
MAX_OPEN = 10


class Transaction:
    def __init__(self, store: Tree):
        self.view = store.copy()
        self.seen: dict[str, int | None] = {}  # path -> its generation when first used
        self.modified: set[str] = set()
        self.changes: list[Change] = []
        self.view.on_access = self._record

    def _record(self, path: str, modified: bool) -> None:
        self.seen.setdefault(path, self.view.generation_of(path))
        if modified:
            self.modified.add(path)

    def commit(self, store: Tree) -> list[Change]:
        """Apply the transaction to STORE and return its changes, or EAGAIN."""
        for path, generation in self.seen.items():
            if store.generation_of(path) != generation:
                raise XenStoreError("EAGAIN", f"{path} changed during the transaction")
        for path in self.modified:
            node = self.view.nodes.get(path)
            if node is None:
                store.nodes.pop(path, None)
            else:
                node.generation = store.generation + 1
                store.nodes[path] = node
        if self.modified:
            store.generation += 1
        return self.changes
