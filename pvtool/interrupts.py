"""Ctrl-C (SIGINT) and SIGTERM: one way to stop pvtool, whatever it is doing.

Python runs a signal handler in the main thread, between two bytecodes. While Unicorn
emulates, the only Python code that runs is its hooks, called back through ctypes, and
an exception raised where the binding's guard (unicorn_py3's `uccallback`) has not yet
caught it escapes into ctypes, which prints "Exception ignored on calling ctypes
callback function" and drops it: the emulation goes on as if nothing had happened.
So every emu_start goes through `emulate`: while it runs, the handler only records the
signal and asks Unicorn to stop, and `emulate` raises it once emu_start has returned,
outside any callback. Anywhere else the handler raises at once, as Python's own SIGINT
handler does, and the unwinding runs every `finally` (disk images flushed and closed,
temporary outputs removed); `held` keeps a second signal from cutting such a cleanup
short.
"""

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

INTERRUPTED_STATUS = 128 + signal.SIGINT  # 130: how a shell reports a death by Ctrl-C
TERMINATED_STATUS = 128 + signal.SIGTERM  # 143: and by SIGTERM
UNTIL_NEVER = 0xFFFF_FFFF_FFFF_FFFF  # emulate's end address for a slice that ends by count


class Interrupted(KeyboardInterrupt):
    """SIGINT, as pvtool raises it: a subclass, never KeyboardInterrupt itself.
    CPython 3.11 marks the process for death by SIGINT whenever code that exec or eval
    ran from a string ends in exactly KeyboardInterrupt, even if a caller catches it
    (Python/pythonrun.c, run_eval_code_obj), and Py_RunMain then kills the process that
    way once it has exited (Modules/main.c): status 130 turned into a signal death
    whenever Ctrl-C landed in a class that dataclasses or namedtuple was making (they
    exec a string for each), say during a lazy import. The check compares the type
    exactly, so a subclass is never marked."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound as Ctrl-C is (where Python's default would end the process
    without running `finally` blocks), and reported with TERMINATED_STATUS."""


@dataclass
class _Hold:
    """While a block holds signals back: how to end the block early, and the first
    signal that arrived."""

    stop: Callable[[], None] | None = None
    pending: int | None = None


_hold = _Hold()


def install() -> None:
    """Handle SIGINT and SIGTERM this way for the rest of the process. A SIGINT that
    is ignored (a shell's background job) stays ignored. SIGTERM comes last, so a
    process whose SIGTERM is caught (SigCgt in /proc/PID/status) handles both."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def _on_signal(signum: int, frame) -> None:
    if _hold.stop is None:
        raise _exception(signum)
    if _hold.pending is None:
        _hold.pending = signum
    _hold.stop()


def _exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else Interrupted()


def ending(exc: KeyboardInterrupt) -> tuple[str, int]:
    """The error line and the exit status for an interruption."""
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM)", TERMINATED_STATUS
    return "interrupted", INTERRUPTED_STATUS


@contextmanager
def held(stop: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Within the block a signal is only recorded, and STOP called to end the block
    early; the signal is raised once the block has finished, whatever it raised.
    Blocks do not nest (the machine's slices and cleanups never do)."""
    _hold.stop = stop
    try:
        yield
    finally:
        _release()


def emulate(uc, begin: int, until: int, count: int = 0) -> None:
    """uc.emu_start(BEGIN, UNTIL, 0, COUNT), ended early by SIGINT or SIGTERM, which are
    raised once it has returned. A signal that lands just before Unicorn starts is
    raised when it returns, a slice later: emu_start forgets a stop asked for before
    it began. This is `held` written out, without a generator: the run loop calls it
    for every slice."""
    _hold.stop = uc.emu_stop
    try:
        uc.emu_start(begin, until, 0, count)
    finally:
        _release()


def _release() -> None:
    """The end of a held block: signals raise at once again, and the one that came
    meanwhile is raised now."""
    signum, _hold.stop, _hold.pending = _hold.pending, None, None
    if signum is not None:
        raise _exception(signum)
