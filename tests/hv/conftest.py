"""Fixtures of the hypervisor tests: test guests built once per session, and an idle
guest to issue hypercalls from (tests.hv.harness.hypercall)."""

import pytest

from tests.hv import xenguest64
from tests.hv.harness import Booted, boot
from tests.hv.xenguest import DEFAULT_NOTES, Guest, guest_source, link


@pytest.fixture(scope="session")
def guest_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("xen-guests")


@pytest.fixture(scope="session")
def build(guest_dir):
    """build(text, handlers=, data=, bss=, notes=, entry=, e_entry=) -> Guest."""

    def _build(text: str = "", *, e_entry: str = "_start", base: int | None = None,
               **parts) -> Guest:
        kwargs = {"e_entry": e_entry} if base is None else {"e_entry": e_entry, "base": base}
        return link(guest_dir, guest_source(text, **parts), **kwargs)

    return _build


@pytest.fixture(scope="session")
def build64(guest_dir):
    """build64(text, handlers=, data=, bss=, notes=, entry=, e_entry=) -> Guest64: a
    64-bit guest (tests/hv/xenguest64.py)."""

    def _build(text: str = "", *, e_entry: str = "_start", **parts) -> xenguest64.Guest64:
        return xenguest64.link(guest_dir, xenguest64.guest_source(text, **parts),
                               e_entry=e_entry)

    return _build


@pytest.fixture
def run_guest(build):
    """Build, boot and run a guest to its stop; give back the Booted guest."""

    def _run(text: str = "", **parts) -> Booted:
        booted = boot(build(text, **parts))
        booted.run()
        return booted

    return _run


@pytest.fixture(scope="module")
def idle_guest(build, request) -> Guest:
    """A guest with no code of its own, for tests that make its hypercalls for it. Its
    .bss is the test module's SCRATCH (the buffers those calls point into) and its notes
    the module's NOTES (DEFAULT_NOTES: 2-level paging), or the notes a test passes by
    indirect parametrization."""
    notes = getattr(request, "param", getattr(request.module, "NOTES", DEFAULT_NOTES))
    return build("", bss=getattr(request.module, "SCRATCH", ""), notes=notes)


@pytest.fixture
def idle(idle_guest) -> Booted:
    """The idle guest booted: a domain whose guest has not run one instruction."""
    return boot(idle_guest)
