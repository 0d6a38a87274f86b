"""Watches (docs/misc/xenstore.txt, WATCH/UNWATCH/WATCH_EVENT; xenstored_watch.c).

A watch is a path and a token a client chose. It fires once when it is set, and again
for every change at or below its path; a removal also fires the watches below the
removed node, each with its own path (fire_watches with rm). The event carries the
changed path, relative when the watch was named relatively, and the token. Special
paths (`@introduceDomain`, `@releaseDomain`) are accepted and fire only when set,
since no domain is ever introduced or released here."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pvtool.hv.xenstore import paths
from pvtool.hv.xenstore.errors import XenStoreError

if TYPE_CHECKING:
    from pvtool.hv.xenstore.connection import Connection

# quota_nb_watch_per_domain: watches one domain may hold (xenstored_core.c, default
# 128); one more gets E2BIG.
MAX_WATCHES = 128


@dataclass(frozen=True)
class Watch:
    conn: "Connection"
    path: str  # absolute, or a special `@` name
    token: bytes
    relative: bool  # named relative to the domain's path: events are reported so

    def event_path(self, path: str) -> bytes:
        return paths.relative_to(path, self.conn.domid, self.relative).encode()

    def initial_path(self) -> bytes:
        return self.event_path(self.path)


class Watches:
    def __init__(self):
        self.all: list[Watch] = []

    def add(self, conn: "Connection", raw_path: bytes, token: bytes) -> Watch:
        if raw_path in paths.SPECIAL_WATCHES:
            path, relative = raw_path.decode(), False
        else:
            path, relative = paths.canonical(raw_path, conn.domid), not raw_path.startswith(b"/")
        if any(w.conn is conn and w.path == path and w.token == token for w in self.all):
            raise XenStoreError("EEXIST", f"watch {path} {token!r}")
        if sum(w.conn is conn for w in self.all) >= MAX_WATCHES:
            raise XenStoreError("E2BIG", f"more than {MAX_WATCHES} watches")
        watch = Watch(conn, path, token, relative)
        self.all.append(watch)
        return watch

    def remove(self, conn: "Connection", raw_path: bytes, token: bytes) -> None:
        special = raw_path in paths.SPECIAL_WATCHES
        path = raw_path.decode() if special else paths.canonical(raw_path, conn.domid)
        for watch in self.all:
            if watch.conn is conn and watch.path == path and watch.token == token:
                self.all.remove(watch)
                return
        raise XenStoreError("ENOENT", f"no watch {path} {token!r}")

    def drop(self, conn: "Connection") -> None:
        self.all = [w for w in self.all if w.conn is not conn]

    def fired_by(self, path: str, removed: bool) -> list[tuple[Watch, str]]:
        """(watch, event path) for every watch a change at PATH fires."""
        fired = []
        for watch in self.all:
            if paths.is_at_or_below(path, watch.path):
                fired.append((watch, path))
            elif removed and paths.is_at_or_below(watch.path, path):
                fired.append((watch, watch.path))
        return fired
