"""Fixtures shared by the whole suite.

The helpers live in tests/oracles.py so that test modules can import them
(``from tests.oracles import guest_path, run_qemu``); these fixtures are the same
helpers for tests that would rather have them injected. tests/ is a package
(tests/__init__.py), so pytest puts the repository root on sys.path and
``tests.oracles`` imports from anywhere in the suite.

The Hypothesis profile (tests/profiles.py) is loaded here, before any test module is
imported, so that the modules' example counts see it; `--hypothesis-profile` still
overrides it.
"""

import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import campaign
from tests.oracles import QEMU, build_guests, guest_path, require_tool, run_qemu
from tests.profiles import in_campaign, load_default_profile

load_default_profile()

# What `make test-fast` (pytest -m "not slow") leaves out, chosen by measurement:
# `pytest -n auto --dist worksteal --durations=0` on 2 cores (busy) spent 2,452 s in the
# tests (the figures below), and the rest of the suite still boots hello natively,
# paravirtualized and trap-and-emulated (tests/test_cli_patch.py, tests/hv/test_trapmode.py).
SLOW_TESTS = re.compile("|".join((
    r"tests/e2e/",  # 1,480 s: every guest in every mode beside QEMU
    r"tests/bench/",  # 114 s: the benchmarks
    r"tests/hv/test_fuzz_hypercalls\.py",  # 92 s: fuzzing
    r"tests/hv/test_fuzz_hypercalls64\.py",  # 45 s at full strength (67 s for 300 examples)
    r"tests/hv/test_frame_counts\.py",  # 67 s: random operation sequences
    r"tests/hv/test_fuzz_blkback\.py",  # 30 s at full strength: fuzzing
    r"tests/test_fuzz_images\.py",  # 21 s: fuzzing
    r"tests/test_readme\.py::test_every_command",  # 108 s busy, 23 s of CPU: README.md
    r"tests/hv/test_trapmode\.py::.*\[minikern\]",  # 56 s: minikern trapped (hello stays)
    # 53 s: a #PF bounced until the kernel stack runs out
    r"tests/hv/test_traps\.py::.*unmapped_memory.*\[bp-and-pf\]",
    # 15 s idle: pvtool started, signalled and waited for, in every mode and command
    r"tests/test_signals\.py::test_an?_(signal|interrupted)",
)))
# A test that boots a guest on QEMU (tests/oracles.py) beside pvtool: slow too.
QEMU_ORACLES = frozenset({"run_qemu", "qemu_int_log"})


def pytest_configure(config: pytest.Config) -> None:
    """Let Ctrl-C reach the pvtool processes the tests start. A shell starts a job in
    the background with SIGINT ignored, and what is ignored stays ignored in every
    child (execve(2)), so a test that interrupts pvtool as Ctrl-C does would see it do
    nothing. A handled SIGINT is reset to its default in a child instead."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line("markers", "slow: left out of `make test-fast` (tests/conftest.py)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if is_slow(item):
            item.add_marker(pytest.mark.slow)


def pytest_sessionstart(session: pytest.Session) -> None:
    if in_campaign() and not hasattr(session.config, "workerinput"):
        campaign.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A pytest-xdist worker of `make fuzz` leaves its figures for the controller."""
    worker = getattr(session.config, "workerinput", {}).get("workerid")
    if in_campaign() and worker:
        campaign.record(worker)


def pytest_terminal_summary(terminalreporter) -> None:
    """`make fuzz` ends with its figures, every worker's added up (tests/campaign.py)."""
    if in_campaign():
        terminalreporter.write_line(campaign.summary(campaign.total()))


def is_slow(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    calls = set(function.__code__.co_names) if function else set()
    return (bool(SLOW_TESTS.match(item.nodeid)) or bool(calls & QEMU_ORACLES)
            or "qemu" in item.fixturenames)


@pytest.fixture(scope="session")
def guests() -> Callable[[str], Path]:
    """Build every guest once per session (`make guests`); give back guest_path."""
    build_guests()
    return guest_path


@pytest.fixture
def qemu() -> Callable[..., object]:
    """run_qemu, after making sure QEMU is installed (skipped without it, failed in CI)."""
    require_tool(QEMU)
    return run_qemu
