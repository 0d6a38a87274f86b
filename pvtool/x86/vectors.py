"""Exception and interrupt vectors (Intel SDM Vol. 3A, 6.3.1, table 6-1), written once.

Vectors 0-31 are the architecture's; pvtool injects device interrupts itself, so a
vector from 32 up that reaches the emulator's interrupt hook came from `int n`.
"""

from enum import IntEnum


class Vector(IntEnum):
    DE = 0  # divide error
    DB = 1  # debug
    NMI = 2
    BP = 3  # breakpoint (int3)
    OF = 4  # overflow (into)
    BR = 5  # bound range
    UD = 6  # invalid opcode
    NM = 7  # device not available
    DF = 8  # double fault
    TS = 10  # invalid TSS
    NP = 11  # segment not present
    SS = 12  # stack-segment fault
    GP = 13  # general protection
    PF = 14  # page fault
    MF = 16  # x87 floating-point error
    AC = 17  # alignment check
    MC = 18  # machine check
    XM = 19  # SIMD floating-point
    VE = 20  # virtualization exception
    CP = 21  # control protection


FIRST_EXTERNAL = 32
# Exceptions that push an error code (table 6-1).
ERROR_CODE = frozenset({Vector.DF, Vector.TS, Vector.NP, Vector.SS, Vector.GP, Vector.PF,
                        Vector.AC, Vector.CP})
# Contributory exceptions (table 6-4): a second one while delivering the first is #DF.
CONTRIBUTORY = frozenset({Vector.DE, Vector.TS, Vector.NP, Vector.SS, Vector.GP})


def vector_name(vector: int) -> str:
    """`#GP` for an architectural exception, `vector N` for anything else."""
    try:
        return f"#{Vector(vector).name}"
    except ValueError:
        return f"vector {vector}"


def idt_error_code(vector: int, gate_size: int = 8) -> int:
    """The error code of a fault on VECTOR's own IDT entry (IDT bit set, 6.13). The
    SDM's index is the vector (scaled by 8); QEMU, the judge of native output, scales
    it by the gate's size, so a 64-bit IDT's (16 bytes) doubles it (do_interrupt64)."""
    return vector * gate_size + 2
