"""Node permissions (docs/misc/xenstore.txt, "Permissions"; xenstored_core.c
perm_for_conn). A node's list is written `<letter><domid>`: the first entry names the
owner and the access every domain not listed gets; later entries give one domain its
access. Letters: r read, w write, b both, n none. The owner and domain 0 (the
privileged toolstack) may do anything."""

from dataclasses import dataclass

from pvtool.abi.xen import HARDWARE_DOMID
from pvtool.hv.xenstore.errors import XenStoreError

READ, WRITE = 1, 2
LETTERS = {"n": 0, "r": READ, "w": WRITE, "b": READ | WRITE}


@dataclass(frozen=True)
class Perm:
    access: str  # one of LETTERS
    domid: int

    def __str__(self) -> str:
        return f"{self.access}{self.domid}"


Perms = tuple[Perm, ...]


def parse_perms(words: list[bytes]) -> Perms:
    """SET_PERMS' strings, each `<letter><domid>`, else EINVAL."""
    perms = []
    for word in words:
        text = word.decode("ascii", "replace")
        if len(text) < 2 or text[0] not in LETTERS or not text[1:].isdigit():
            raise XenStoreError("EINVAL", f"bad permission {text[:16]!r}")
        perms.append(Perm(text[0], int(text[1:])))
    if not perms:
        raise XenStoreError("EINVAL", "no permissions")
    return tuple(perms)


def encode_perms(perms: Perms) -> bytes:
    return b"".join(str(p).encode() + b"\0" for p in perms)


def allowed(perms: Perms, domid: int, want: int) -> bool:
    if domid == HARDWARE_DOMID or domid == perms[0].domid:
        return True
    for perm in perms[1:]:
        if perm.domid == domid:
            return LETTERS[perm.access] & want == want
    return LETTERS[perms[0].access] & want == want


def inherited(parent: Perms, creator: int) -> Perms:
    """A new node's list: its parent's, but an unprivileged creator owns what it makes
    (xenstored_core.c construct_node)."""
    if creator == HARDWARE_DOMID:
        return parent
    return (Perm(parent[0].access, creator),) + parent[1:]
