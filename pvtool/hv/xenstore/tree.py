"""The store: a tree of nodes, each with a value, a permission list, its children in
the order they were made, and a generation (the tree's change counter when it last
changed), which is how a transaction finds that someone else wrote what it used.

Every operation takes the domain asking, checks its permissions (perms.py), and
returns the changes it made for watches: (path, removed), where a removal also reaches
watches below the path (xenstored_core.c fire_watches with rm set)."""

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pvtool.abi.xen import HARDWARE_DOMID
from pvtool.hv.xenstore import paths
from pvtool.hv.xenstore.errors import XenStoreError
from pvtool.hv.xenstore.perms import READ, WRITE, Perm, Perms, allowed, inherited

# quota_max_entry_size: the longest value an unprivileged domain may store
# (xenstored_core.c, default 2048 bytes); longer ones get ENOSPC.
MAX_ENTRY_SIZE = 2048
ROOT_PERMS: Perms = (Perm("n", HARDWARE_DOMID),)

Change = tuple[str, bool]  # (path, removed)


@dataclass
class Node:
    value: bytes
    perms: Perms
    children: list[str] = field(default_factory=list)
    generation: int = 0


class Tree:
    def __init__(self):
        self.nodes: dict[str, Node] = {"/": Node(b"", ROOT_PERMS)}
        self.generation = 0
        # Told of every path an operation looks at (modified=False) or changes
        # (modified=True) before it does: a transaction's record (transactions.py).
        self.on_access: Callable[[str, bool], None] | None = None

    def copy(self) -> "Tree":
        twin = Tree()
        twin.nodes = {p: replace(n, children=list(n.children)) for p, n in self.nodes.items()}
        twin.generation = self.generation
        return twin

    def generation_of(self, path: str) -> int | None:
        node = self.nodes.get(path)
        return None if node is None else node.generation

    # -- reading -------------------------------------------------------------------------
    def read(self, path: str, domid: int) -> bytes:
        return self._node(path, domid, READ).value

    def directory(self, path: str, domid: int) -> list[str]:
        return list(self._node(path, domid, READ).children)

    def get_perms(self, path: str, domid: int) -> Perms:
        return self._node(path, domid, READ).perms

    def exists(self, path: str) -> bool:
        self._access(path, False)
        return path in self.nodes

    # -- changing ------------------------------------------------------------------------
    def write(self, path: str, value: bytes, domid: int) -> list[Change]:
        if domid != HARDWARE_DOMID and len(value) > MAX_ENTRY_SIZE:
            raise XenStoreError("ENOSPC", f"a value of {len(value)} bytes")
        if self.exists(path):
            node = self._node(path, domid, WRITE)
            self._access(path, True)
            node.value = value
            node.generation = self._tick()
        else:
            self._create(path, value, domid)
        return [(path, False)]

    def mkdir(self, path: str, domid: int) -> list[Change]:
        if self.exists(path):
            self._node(path, domid, WRITE)  # do_mkdir asks for write access even so
            return []
        self._create(path, b"", domid)
        return [(path, False)]

    def rm(self, path: str, domid: int) -> list[Change]:
        """Remove PATH and everything below; an absent node is no error unless its
        parent is absent too (xenstore.txt, RM)."""
        if path == "/":
            raise XenStoreError("EINVAL", "the root cannot be removed")
        if not self.exists(path):
            if not self.exists(paths.parent(path)):
                raise XenStoreError("ENOENT", paths.parent(path))
            return []
        self._node(path, domid, WRITE)
        parent = self.nodes[paths.parent(path)]
        self._access(paths.parent(path), True)
        parent.children.remove(paths.basename(path))
        parent.generation = self._tick()
        self._remove_subtree(path)
        return [(path, True)]

    def set_perms(self, path: str, perms: Perms, domid: int) -> list[Change]:
        node = self._node(path, domid, READ)
        if domid not in (HARDWARE_DOMID, node.perms[0].domid):
            raise XenStoreError("EACCES", f"domain {domid} does not own {path}")
        if domid != HARDWARE_DOMID and perms[0].domid != node.perms[0].domid:
            raise XenStoreError("EPERM", "only domain 0 gives a node away")
        self._access(path, True)
        node.perms = perms
        node.generation = self._tick()
        return [(path, False)]

    # -- the machinery -------------------------------------------------------------------
    def _tick(self) -> int:
        self.generation += 1
        return self.generation

    def _access(self, path: str, modified: bool) -> None:
        if self.on_access is not None:
            self.on_access(path, modified)

    def _node(self, path: str, domid: int, want: int) -> Node:
        self._access(path, False)
        node = self.nodes.get(path)
        if node is None:
            raise XenStoreError("ENOENT", path)
        if not allowed(node.perms, domid, want):
            raise XenStoreError("EACCES", f"domain {domid} on {path}")
        return node

    def _create(self, path: str, value: bytes, domid: int) -> None:
        """PATH and its missing ancestors, each inheriting its parent's permissions;
        creating needs write access to the nearest existing ancestor."""
        chain = [*paths.ancestors(path), path]
        first_missing = next(i for i, p in enumerate(chain) if not self.exists(p))
        self._node(chain[first_missing - 1], domid, WRITE)
        for parent, child in zip(chain[first_missing - 1:-1], chain[first_missing:], strict=True):
            self._access(parent, True)
            self._access(child, True)
            above = self.nodes[parent]
            above.children.append(paths.basename(child))
            above.generation = self._tick()
            self.nodes[child] = Node(value if child == path else b"",
                                     inherited(above.perms, domid), generation=self._tick())

    def _remove_subtree(self, path: str) -> None:
        self._access(path, True)
        node = self.nodes.pop(path)
        for child in node.children:
            self._remove_subtree(f"{path.rstrip('/')}/{child}")
