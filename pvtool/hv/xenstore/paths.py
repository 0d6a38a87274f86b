"""XenStore paths (docs/misc/xenstore.txt, "Paths"; xenstored_core.c is_valid_nodename):
absolute ones start with `/`; a relative one is under the client's domain path,
/local/domain/<domid>. Characters are letters, digits and `-/_@`, with no empty
component and no trailing `/`. Watch paths may also be the special `@` names."""

from pvtool.abi.xs_wire import XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX
from pvtool.hv.xenstore.errors import XenStoreError

ALLOWED = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/_@")
SPECIAL_WATCHES = (b"@introduceDomain", b"@releaseDomain")


def domain_path(domid: int) -> str:
    return f"/local/domain/{domid}"


def canonical(raw: bytes, domid: int) -> str:
    """The absolute path RAW names for a client of domain DOMID, or EINVAL."""
    relative = not raw.startswith(b"/")
    limit = XENSTORE_REL_PATH_MAX if relative else XENSTORE_ABS_PATH_MAX
    if not raw or len(raw) > limit or not set(raw) <= ALLOWED:
        raise XenStoreError("EINVAL", f"bad path {raw[:64]!r}")
    path = f"{domain_path(domid)}/{raw.decode()}" if relative else raw.decode()
    if path != "/" and (path.endswith("/") or "//" in path):
        raise XenStoreError("EINVAL", f"bad path {path[:64]!r}")
    return path


def relative_to(path: str, domid: int, relative: bool) -> str:
    """PATH as a client that named its watch relatively expects to see it."""
    prefix = domain_path(domid) + "/"
    return path[len(prefix):] if relative and path.startswith(prefix) else path


def parent(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def basename(path: str) -> str:
    return path.rsplit("/", 1)[1]


def is_at_or_below(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top + "/")


def ancestors(path: str) -> list[str]:
    """From the root down to PATH's parent."""
    parts = path.strip("/").split("/")[:-1] if path != "/" else []
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]
