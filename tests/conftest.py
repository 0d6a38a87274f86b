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

import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.oracles import QEMU, build_guests, guest_path, require_tool, run_qemu
from tests.profiles import load_default_profile

load_default_profile()


def pytest_configure(config: pytest.Config) -> None:
    """Let Ctrl-C reach the pvtool processes the tests start. A shell starts a job in
    the background with SIGINT ignored, and what is ignored stays ignored in every
    child (execve(2)), so a test that interrupts pvtool as Ctrl-C does would see it do
    nothing. A handled SIGINT is reset to its default in a child instead."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
