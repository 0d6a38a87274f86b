"""QEMU's isa-debug-exit device (port 0xF4, 4 bytes): a write ends the run with the
written value as the guest's exit code (QEMU itself exits with (code << 1) | 1)."""

from collections.abc import Callable

DEBUG_EXIT_PORT = 0xF4
DEBUG_EXIT_PORTS = 4


class DebugExit:
    def __init__(self, on_exit: Callable[[int], None]):
        self._on_exit = on_exit

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        self._on_exit(value)
