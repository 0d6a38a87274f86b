"""Running a patched 64-bit kernel's glue on Unicorn, with the hypercalls recorded.

A test machine of its own (not pvtool's hypervisor, which is not involved): 32 MiB of
RAM, 4-level tables of 2 MiB pages mapping it at 0, at Xen's M2P and at KERNBASE (where a kernel
linked like minikern64 and its added sections live), the patched image's PT_LOAD
segments at their physical addresses, and a `syscall` hook standing in for Xen: it
records each hypercall (the number the hypercall page put in eax, the argument
registers, and whatever guest memory the test asks for at that moment) and returns
0, or stops the run. Glue functions are found by name in the listing diff the patcher
wrote (`<pv_name>:` lines), so nothing here imports the patcher.
"""

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import unicorn as uc
from unicorn import x86_const as X

from tests.patch.tools import segments

KERNBASE = 0xFFFF_FFFF_8000_0000
RAM = 32 << 20
EINVAL = 22  # public/errno.h
TABLES = 0xF0_0000  # L4, L3 (high), L3 (low), L2
# Xen's read-only M2P (RO_MPT_VIRT_START, 0xffff800000000000): RAM from 0 again, where
# a test writes the machine-to-pseudo-physical entries (test_glue64.identity_p2m).
M2P_L4_SLOT = 256
STACK_TOP = KERNBASE + 0xD0_0000
RETURN = KERNBASE + 0xCF_F000  # a hlt the harness returns to
ARGS = (X.UC_X86_REG_RDI, X.UC_X86_REG_RSI, X.UC_X86_REG_RDX, X.UC_X86_REG_R10,
        X.UC_X86_REG_R8)
# Control-register bits (Intel SDM Vol. 3A, 2.5) and EFER's (Vol. 4).
CR0_PE, CR0_ET, CR0_WP, CR0_PG = 1, 1 << 4, 1 << 16, 1 << 31
CR4_PAE = 1 << 5
IA32_EFER = 0xC000_0080
EFER_SCE, EFER_LME, EFER_LMA, EFER_NXE = 1, 1 << 8, 1 << 10, 1 << 11
PRESENT_RW, LARGE = 0x3, 0x80


@dataclass
class Hypercall:
    number: int
    args: tuple[int, ...]
    rsp: int  # where the hypercall page's pushes end: HYPERVISOR_iret's frame
    memory: dict[str, bytes] = field(default_factory=dict)


class GlueMachine:
    def __init__(self, patched: Path):
        self.image = patched
        self.cpu = uc.Uc(uc.UC_ARCH_X86, uc.UC_MODE_64)
        self.cpu.mem_map(0, RAM)
        self._load(patched)
        self._page_tables()
        self.cpu.mem_write(RETURN - KERNBASE, b"\xf4")
        self.calls: list[Hypercall] = []
        self.watch: dict[str, tuple[int, int]] = {}  # name -> (address, size) read per call
        self.stop_at: set[int] = set()  # hypercall numbers that end the run
        self.refuse: set[int] = set()  # hypercall numbers answered -EINVAL, not 0
        self.cpu.hook_add(uc.UC_HOOK_INSN, self._syscall, None, 1, 0, X.UC_X86_INS_SYSCALL)
        self.functions = glue_functions(patched.with_suffix(".diff"))

    # ---- memory, at kernel virtual addresses (KERNBASE + physical)
    def read(self, address: int, size: int) -> bytes:
        return bytes(self.cpu.mem_read(address - KERNBASE, size))

    def write(self, address: int, data: bytes) -> None:
        self.cpu.mem_write(address - KERNBASE, data)

    def u64(self, address: int) -> int:
        return struct.unpack("<Q", self.read(address, 8))[0]

    def reg(self, name: str, value: int | None = None) -> int:
        register = getattr(X, f"UC_X86_REG_{name.upper()}")
        if value is not None:
            self.cpu.reg_write(register, value)
        return self.cpu.reg_read(register)

    # ---- running
    def call(self, name: str, stack: int = STACK_TOP, **registers: int) -> None:
        """Call glue function NAME with REGISTERS set, its return address pushed below
        STACK (what the caller left on the stack above it), until it returns (or a
        hypercall in stop_at ends the run)."""
        rsp = stack - 8
        self.write(rsp, struct.pack("<Q", RETURN))
        self.run(self.functions[name], rsp, **registers)

    def run(self, start: int, rsp: int, until: int = RETURN, **registers: int) -> None:
        self.reg("rsp", rsp)
        for register, value in registers.items():
            self.reg(register, value)
        self.cpu.emu_start(start, until, count=200_000)

    def _syscall(self, cpu, _data) -> None:
        number = cpu.reg_read(X.UC_X86_REG_RAX)
        memory = {name: bytes(cpu.mem_read(address - KERNBASE, size))
                  for name, (address, size) in self.watch.items()}
        self.calls.append(Hypercall(number, tuple(cpu.reg_read(r) for r in ARGS),
                                    cpu.reg_read(X.UC_X86_REG_RSP), memory))
        if number in self.stop_at:
            cpu.emu_stop()
        cpu.reg_write(X.UC_X86_REG_RAX, -EINVAL & (1 << 64) - 1 if number in self.refuse else 0)

    # ---- setup
    def _load(self, patched: Path) -> None:
        data = patched.read_bytes()
        for seg in segments(patched):
            if seg.type == "LOAD" and seg.filesz:
                self.cpu.mem_write(seg.paddr, data[seg.offset:seg.offset + seg.filesz])

    def _page_tables(self) -> None:
        l4, l3_high, l3_low, l2 = (TABLES + 0x1000 * n for n in range(4))
        entry = lambda address: struct.pack("<Q", address | PRESENT_RW)  # noqa: E731
        self.cpu.mem_write(l4 + 511 * 8, entry(l3_high))
        self.cpu.mem_write(l4, entry(l3_low))
        self.cpu.mem_write(l4 + M2P_L4_SLOT * 8, entry(l3_low))
        self.cpu.mem_write(l3_high + 510 * 8, entry(l2))
        self.cpu.mem_write(l3_low, entry(l2))
        for index in range(RAM >> 21):
            self.cpu.mem_write(l2 + index * 8,
                               struct.pack("<Q", (index << 21) | PRESENT_RW | LARGE))
        self.cpu.reg_write(X.UC_X86_REG_CR3, l4)
        self.cpu.reg_write(X.UC_X86_REG_CR4, CR4_PAE)
        self.cpu.reg_write(X.UC_X86_REG_MSR, (IA32_EFER, EFER_SCE | EFER_LME | EFER_LMA
                                                | EFER_NXE))
        self.cpu.reg_write(X.UC_X86_REG_CR0, CR0_PE | CR0_ET | CR0_WP | CR0_PG)


def glue_functions(diff: Path) -> dict[str, int]:
    """name -> address of every glue function, from the listing diff's added lines."""
    found = {}
    for match in re.finditer(r"^\+([0-9a-f]+) <(pv_\w+)>:", diff.read_text(), re.MULTILINE):
        found.setdefault(match.group(2), int(match.group(1), 16))
    return found
