"""The task-state segment (Intel SDM Vol. 3A, 7.2.1, figure 7-2): the fields a 32-bit
task switch reads from the new task and writes into the old one, and the ring stacks
an interrupt reads from a 32-bit or a 64-bit TSS (7.7), written once.

A task switch saves only the dynamic fields (EIP, EFLAGS, the general registers and
the segment selectors); CR3, the LDT selector and the ring stacks are static, read
from the new task and never written back (7.2.1).
"""

import struct
from dataclasses import dataclass

TSS32_SIZE = 0x68  # a 32-bit TSS's limit must be at least SIZE - 1, or #TS (7.2.2)
LINK = 0x00  # the previous task's selector, written by a call or interrupt (7.4)
CR3 = 0x1C
DYNAMIC = 0x20  # EIP, EFLAGS, EAX..EDI, then ES, CS, SS, DS, FS, GS
LDT = 0x60
TSS32_ESP0 = 4  # ESP0, then SS0 (16 bits): the ring-0 stack of an interrupt from ring 3
TSS64_RSP0 = 4  # RSP0-RSP2, 8 bytes each, in a 64-bit TSS (7.7)
TSS64_IST1 = 0x24  # IST1-IST7, 8 bytes each

# Descriptor type bit 1 (bit 41 of the descriptor) tells a busy TSS from an
# available one (7.2.2): type 9 is available, 0xB busy.
BUSY_BIT = 1 << 41

GPR_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")  # TSS order
SEGMENT_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")  # TSS order
_REGISTERS = struct.Struct(f"<{2 + len(GPR_NAMES)}I")  # EIP, EFLAGS, the general registers
_SELECTOR_SLOT = 4  # each selector is 16 bits in a 32-bit slot whose top is reserved


@dataclass(frozen=True)
class TaskState:
    """A task's registers as its TSS holds them."""

    eip: int
    eflags: int
    gprs: tuple[int, ...]  # in GPR_NAMES order
    segments: tuple[int, ...]  # in SEGMENT_NAMES order
    cr3: int = 0
    ldt: int = 0

    @classmethod
    def decode(cls, raw: bytes) -> "TaskState":
        """The state in RAW, the TSS_SIZE bytes of a 32-bit TSS."""
        eip, eflags, *gprs = _REGISTERS.unpack_from(raw, DYNAMIC)
        segments_at = DYNAMIC + _REGISTERS.size
        segments = tuple(struct.unpack_from("<H", raw, segments_at + i * _SELECTOR_SLOT)[0]
                         for i in range(len(SEGMENT_NAMES)))
        cr3, = struct.unpack_from("<I", raw, CR3)
        ldt, = struct.unpack_from("<H", raw, LDT)
        return cls(eip, eflags, tuple(gprs), segments, cr3, ldt)

    def save_into(self, raw: bytearray) -> None:
        """Write the dynamic fields into RAW (a TSS's bytes from DYNAMIC to LDT), as
        the CPU saves the outgoing task: the reserved halves stay as they were."""
        _REGISTERS.pack_into(raw, 0, self.eip, self.eflags, *self.gprs)
        for i, value in enumerate(self.segments):
            struct.pack_into("<H", raw, _REGISTERS.size + i * _SELECTOR_SLOT, value)
