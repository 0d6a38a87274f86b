"""What the CPU raised: one small record per interrupt or exception, built by the
machine's hooks and handed to whoever supervises the CPU (the bare machine's IDT
delivery, or a hypervisor).

Unicorn reports `int n`, faults and #UD alike, through two different hooks, without
saying which is which or what the fault's error code was (shared/UNICORN.md). The
machine works that out here, once, and acknowledges a fault to Unicorn before anyone
handles it: handlers never touch the emulator's workarounds.
"""

from enum import Enum

from pvtool.machine.cpu import Cpu
from pvtool.machine.memory import GuestMemory, UnassignedMemory
from pvtool.x86.paging import AddressFault
from pvtool.x86.vectors import ERROR_CODE, FIRST_EXTERNAL, Vector

INT_IMM8 = 0xCD  # `int n`; int3 (0xCC) and into (0xCE) are one byte


class Kind(Enum):
    """The interruption types of the SDM (Vol. 3C, 25.8.3, VM-entry interruption
    information), as far as pvtool tells them apart."""

    EXCEPTION = "exception"  # raised by an instruction: the return address is on it
    SOFTWARE = "software"  # int n, int3, into: the return address is after it
    EXTERNAL = "external"  # a device interrupt, injected between instructions


class Interruption:
    """One interrupt or exception. `ip` is the return address the CPU would push.
    `length` is the size of the instruction a software interruption came from: 2 for
    `int n` (`cd 03` included), 1 for int3 and into; 0 for anything else. `software`
    is set once, here: it is asked on every exit."""

    __slots__ = ("vector", "kind", "ip", "error_code", "length", "software")

    def __init__(self, vector: int, kind: Kind, ip: int, error_code: int | None = None,
                 length: int = 0):
        self.vector = vector
        self.kind = kind
        self.ip = ip
        self.error_code = error_code
        self.length = length
        self.software = kind is Kind.SOFTWARE

    def __repr__(self) -> str:
        return (f"Interruption({self.vector}, {self.kind.value}, ip={self.ip}, "
                f"error_code={self.error_code})")


def from_intr_hook(cpu: Cpu, memory: GuestMemory, vector: int) -> Interruption:
    """What Unicorn's INTR hook reported. From 32 up only `int n` can raise a vector
    (pvtool injects device interrupts itself), so nothing more is read there: that is
    the hypercall's path. Below 32 the CPU's state says whether an instruction raised
    it; a fault's error code is read and the fault acknowledged (UNICORN.md: the next
    one would otherwise arrive as a double fault), both in place, with no context
    save and no guest byte read: the path of every writable-page-table store."""
    ip = cpu.ip  # positional arguments below: half the cost of keywords
    if vector >= FIRST_EXTERNAL:
        return Interruption(vector, Kind.SOFTWARE, ip, None, 2)
    if cpu.raised_by_instruction:
        return Interruption(vector, Kind.SOFTWARE, ip, None, _int_length(memory, vector, ip))
    error_code = cpu.ack_exception()
    return Interruption(vector, Kind.EXCEPTION, ip,
                        error_code if vector in ERROR_CODE else None)


def invalid_opcode(cpu: Cpu) -> Interruption:
    """ud2 and other invalid opcodes bypass the INTR hook (UNICORN.md): a #UD fault,
    EIP on the instruction."""
    return Interruption(Vector.UD, Kind.EXCEPTION, ip=cpu.ip)


def external(vector: int, ip: int) -> Interruption:
    """A device interrupt taken between instructions, returning to IP."""
    return Interruption(vector, Kind.EXTERNAL, ip=ip)


def _int_length(memory: GuestMemory, vector: int, ip: int) -> int:
    """The length of the instruction that raised VECTOR and ends at IP: `int n` is 2
    bytes, int3 (#BP) and into (#OF) 1, unless they were written `int 3`, `int 4`."""
    if vector not in (Vector.BP, Vector.OF):
        return 2
    try:
        before = memory.read_virt(ip - 2, 2)
    except (AddressFault, UnassignedMemory):  # unmapped, or not canonical (64-bit)
        return 1
    return 2 if before == bytes((INT_IMM8, vector)) else 1
