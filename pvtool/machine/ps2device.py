"""What the PS/2 keyboard and mouse share: the queue of bytes they send the 8042.
Bytes beyond QUEUE_SIZE are lost, and reading an empty queue gives the last byte
again, as QEMU's PS2Queue does (hw/input/ps2.c)."""

from collections import deque

QUEUE_SIZE = 16


class Ps2Device:
    def __init__(self):
        self.queue_bytes: deque[int] = deque()
        self.last = 0

    def pending(self) -> bool:
        return bool(self.queue_bytes)

    def queue(self, *values: int) -> None:
        for value in values:
            if len(self.queue_bytes) < QUEUE_SIZE:
                self.queue_bytes.append(value)

    def read(self) -> int:
        if self.queue_bytes:
            self.last = self.queue_bytes.popleft()
        return self.last
