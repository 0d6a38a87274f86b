"""Boot a test guest on a Machine with pvtool's domain builder and run it, keeping
the machine and the domain at hand for white-box checks (guest memory, registers,
page tables, the stop reason), or issue hypercalls from it without running it."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from pvtool.hv.boot import boot_pv_domain
from pvtool.hv.domain import Domain
from pvtool.hv.hypercalls import call
from pvtool.image.elf import load_elf
from pvtool.machine.cpu import CR3
from pvtool.machine.pc import Machine
from pvtool.machine.stop import Stop
from tests.hv.xenguest import Guest

RAM = 16 << 20  # small: the builder writes a p2m and m2p entry per page
SLICE = 20_000
MAX_SLICES = 50  # 1 M instructions: every test guest finishes in far fewer
HYPERCALL_ARGS = 5  # EBX, ECX, EDX, ESI, EDI (XEN-ABI.md, "Calling convention")

# Page-table entry bits (Intel SDM Vol. 3A, 4.3), typed here for the checks.
P, RW, US, PS = 1, 2, 4, 0x80


@dataclass
class Booted:
    guest: Guest
    machine: Machine
    domain: Domain
    output: bytearray = field(default_factory=bytearray)

    @property
    def cpu(self):
        return self.machine.cpu

    @property
    def memory(self):
        return self.machine.memory

    def slice(self, count: int) -> None:
        """One slice. Unicorn leaves QEMU's old_exception at 14 after every emu_start
        with an instruction count and paging on, so the next #GP or #PF would arrive
        as #DF; Machine.run_slice does not reset it yet (test_run_pv.py shows that
        bug through pvtool's own run loop), so these white-box runs do."""
        self.cpu.ack_exception()
        self.machine.run_slice(count)

    def run(self, max_slices: int = MAX_SLICES) -> Stop:
        """Run until the guest stops; fail the test if it never does."""
        for _ in range(max_slices):
            if self.machine.stop is not None:
                break
            self.slice(SLICE)
        assert self.machine.stop is not None, (
            f"the guest did not stop within {max_slices * SLICE} instructions "
            f"(output so far {bytes(self.output)!r})")
        return self.machine.stop

    def run_until(self, symbol: str, value: int, max_slices: int = MAX_SLICES) -> None:
        """Run in short slices until the u32 at SYMBOL holds VALUE (the guest's own
        phase marker), so a test can change the world mid-run."""
        for _ in range(max_slices * 20):
            if self.u32(symbol) == value:
                return
            assert self.machine.stop is None, f"the guest stopped first: {self.machine.stop}"
            self.slice(1000)
        raise AssertionError(f"{symbol} never became {value:#x}")

    def remap_behind_the_tlb(self, vaddr: int, pte: int) -> None:
        """Once the guest reports phase 1, write PTE into the L1 entry of VADDR as plain
        memory (no flush: the CPU keeps the old translation) and let the guest go on
        (xenguest.STALE_TRANSLATION)."""
        self.run_until("phase", 1)
        self.memory.write_u32(self.pte_address(vaddr), pte)
        self.write_u32s("go", 1)

    # -- memory: a kernel symbol's physical address is its own less VIRT_BASE ----------
    def addr(self, symbol: str | int) -> int:
        return self.guest[symbol] - self.guest.virt_base if isinstance(symbol, str) else symbol

    def u32(self, symbol: str | int, index: int = 0) -> int:
        return struct.unpack("<I", self.memory.read_phys(self.addr(symbol) + 4 * index, 4))[0]

    def u32s(self, symbol: str | int, count: int) -> tuple[int, ...]:
        return struct.unpack(f"<{count}I", self.memory.read_phys(self.addr(symbol), 4 * count))

    def write(self, symbol: str | int, data: bytes) -> None:
        self.memory.write_phys(self.addr(symbol), data)

    def write_u32s(self, symbol: str | int, *values: int) -> None:
        self.write(symbol, struct.pack(f"<{len(values)}I", *(v & 0xFFFFFFFF for v in values)))

    # -- page tables, walked here rather than with pvtool's walker ---------------------
    def pde(self, vaddr: int, cr3: int | None = None) -> int:
        base = (self.cpu.read(CR3) if cr3 is None else cr3) & ~0xFFF
        return struct.unpack("<I", self.memory.read_phys(base + 4 * (vaddr >> 22), 4))[0]

    def pte_address(self, vaddr: int, cr3: int | None = None) -> int | None:
        pde = self.pde(vaddr, cr3)
        if not pde & P:
            return None
        assert not pde & PS, "the tests' tables have no 4 MiB pages"
        return (pde & ~0xFFF) + 4 * ((vaddr >> 12) & 0x3FF)

    def pte(self, vaddr: int, cr3: int | None = None) -> int:
        """The L1 entry mapping VADDR (0 if its page directory slot is empty)."""
        address = self.pte_address(vaddr, cr3)
        return 0 if address is None else struct.unpack(
            "<I", self.memory.read_phys(address, 4))[0]


def boot(guest: Guest, *, ram: int = RAM, cmdline: bytes = b"",
         modules: tuple[Path, ...] = (), vcpus: int = 1) -> Booted:
    output = bytearray()
    image = load_elf(guest.path)
    machine = Machine(ram_size=ram, output=output.extend, bits=image.bits)
    domain = boot_pv_domain(machine, image, cmdline=cmdline, modules=modules, vcpus=vcpus)
    return Booted(guest, machine, domain, output)


def hypercall(booted: Booted, number: int, *args: int) -> int:
    """Hypercall NUMBER from the guest's vCPU, as its int 0x82 (or `syscall`) makes it
    (the argument registers it does not name hold 0), straight into the dispatcher;
    EAX (RAX) as the guest then sees it."""
    domain = booted.domain
    registers = args + (0,) * (HYPERCALL_ARGS - len(args))
    return call(domain, domain.vcpu, number, registers) & booted.cpu.width.mask
