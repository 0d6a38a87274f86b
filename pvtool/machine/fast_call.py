"""The fast system-call instructions, `syscall` and `sysenter`: one small record per
execution, built by the machine's hooks and handed to the supervisor.

Unicorn 2.1.4 runs neither instruction: each only calls its UC_HOOK_INSN hook, in
both widths and at every CPL, without reading an MSR or touching a register (RCX,
R11, CS, SS, RSP and RFLAGS stay as they were; XEN-ABI64.md 2.3). Measured for both
(tests/machine/test_fast_call.py): in the hook RIP is on the instruction's first byte,
prefixes included, and after the hook Unicorn adds the instruction's whole length
(2, plus one per prefix) to whatever RIP then is, even one the hook wrote. The
machine hides that: a supervisor sets `resume` and the machine writes
`resume - length`; with `resume` left as None execution goes on after the instruction
and no register is read or written at all (the hypercall path).
"""

from enum import Enum

from pvtool.machine.cpu import Cpu
from pvtool.machine.memory import GuestMemory, PageFault, UnassignedMemory
from pvtool.x86.isa import MAX_INSN_SIZE

OPCODES = {b"\x0f\x05": "syscall", b"\x0f\x34": "sysenter"}
PLAIN_LENGTH = 2  # 0F 05 and 0F 34, which is how every kernel writes them


class FastCallKind(Enum):
    SYSCALL = "syscall"
    SYSENTER = "sysenter"


class FastCall:
    """One `syscall` or `sysenter`. `ip` (the instruction's address) and `length` are
    read when first asked, so a supervisor that asks for neither costs no register
    access. `resume`, if the supervisor sets it, is where execution continues.

    The machine keeps one record per kind and clears it for each execution (`clear`):
    building one per hypercall cost about a third of an empty hook. So a record is
    valid only during the on_fast_call that received it."""

    __slots__ = ("kind", "resume", "_ip", "_length", "_cpu", "_memory")

    def __init__(self, kind: FastCallKind, cpu: Cpu, memory: GuestMemory):
        self.kind = kind
        self.resume: int | None = None
        self._ip: int | None = None
        self._length: int | None = None
        self._cpu = cpu
        self._memory = memory

    def clear(self) -> None:
        """Ready for the next execution: nothing known, no resume address."""
        self.resume = self._ip = self._length = None

    @property
    def ip(self) -> int:
        if self._ip is None:
            self._ip = self._cpu.ip
        return self._ip

    @property
    def next_ip(self) -> int:
        """The address after the instruction (what `syscall` saves in RCX)."""
        return (self.ip + self.length) & self._cpu.width.mask

    @property
    def length(self) -> int:
        """The instruction's length, prefixes included, from its bytes under the
        page tables in force when first asked (ask before switching them). Bytes that
        cannot be read, or no opcode within 15 bytes, count as the plain 2."""
        if self._length is None:
            self._length = _length_at(self._memory, self.ip)
        return self._length

    def __repr__(self) -> str:
        return f"FastCall({self.kind.value}, ip={self._ip}, resume={self.resume})"


def _length_at(memory: GuestMemory, ip: int) -> int:
    try:
        for length in range(PLAIN_LENGTH, MAX_INSN_SIZE + 1):
            if memory.read_virt(ip + length - PLAIN_LENGTH, PLAIN_LENGTH) in OPCODES:
                return length
    except (PageFault, UnassignedMemory):
        pass
    return PLAIN_LENGTH
