"""A ptwr exit's EIP moved in place (Cpu.resume_after_fault) and its entry stored in
place (GuestMemory.store_entry), in real runs of guests/nanobench on both widths: the
kernel's PTE stores (pte_update) make no uc_reg_write of EIP and have QEMU drop no
translated code (write_phys would: machine/memory.py), and the run prints the same
bytes and takes the same exits as one whose ptwr exits write EIP through Unicorn and
the entry by write_phys; a #PF bounced to the kernel's handler (page_fault), which
changes the vCPU's mode, still writes EIP through Unicorn. And the two methods alone
on a bare Unicorn: the entry's store, in RAM and elsewhere; EIP stored in a fault's
hook, where the CPU resumes.
"""

import struct
from collections import Counter
from pathlib import Path

import pytest
from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc
from unicorn import x86_const as X

from pvtool.hv import ptwr
from pvtool.machine import cpu as cpu_module
from pvtool.machine import memory as memory_module
from pvtool.machine.cpu import EAX, Cpu
from pvtool.machine.exits import Exit
from pvtool.machine.memory import GuestMemory, UnassignedMemory
from pvtool.machine.qemu_functions import QemuFunctions
from pvtool.run import Mode, RunOptions, run_image
from tests.e2e.patched import patched_once
from tests.machine.test_cpu import bare_cpu

STORES = 300
IP_REGISTERS = (X.UC_X86_REG_EIP, X.UC_X86_REG_RIP)


class Spy:
    """Unicorn's EIP writes and QEMU's code invalidations a run makes, those made
    while ptwr handles a fault apart (installed before the machine is made, which
    binds the invalidation when it maps its RAM)."""

    def __init__(self, monkeypatch):
        self.in_ptwr = False
        self.ip_writes = Counter()  # in ptwr or not -> uc_reg_write of EIP/RIP
        self.invalidations = Counter()
        real_reg, real_invalidate = cpu_module._reg_write, QemuFunctions.invalidate_code

        def reg_write(handle, reg, value):
            if reg in IP_REGISTERS:
                self.ip_writes[self.in_ptwr] += 1
            return real_reg(handle, reg, value)

        def invalidate(qemu, start, end):
            self.invalidations[self.in_ptwr] += 1
            return real_invalidate(qemu, start, end)

        monkeypatch.setattr(cpu_module, "_reg_write", reg_write)
        monkeypatch.setattr(QemuFunctions, "invalidate_code", invalidate)
        monkeypatch.setattr(ptwr, "_emulate_store", self._flagged(ptwr._emulate_store))

    def _flagged(self, emulate):
        def flagged(*args):
            self.in_ptwr = True
            try:
                return emulate(*args)
            finally:
                self.in_ptwr = False
        return flagged


def run(image: Path, cmdline: str) -> tuple[bytes, Counter]:
    output = bytearray()
    result = run_image(image, RunOptions(mode=Mode.PV, cmdline=cmdline.encode()),
                       output.extend)
    assert result.stop.guest_chose, result.stop.describe()
    return bytes(output), result.exits


def through_unicorn(monkeypatch) -> None:
    """ptwr's writes as any other: EIP by uc_reg_write, the entry by write_phys."""
    monkeypatch.setattr(Cpu, "resume_after_fault",
                        lambda cpu, ip: cpu.write(cpu.width.ip, ip))
    monkeypatch.setattr(GuestMemory, "store_entry",
                        lambda memory, addr, entry, value:
                        memory.write_phys(addr, entry.pack(value)))


@pytest.mark.parametrize("guest", ["nanobench", "nanobench64"])
def test_ptwr_exits_write_in_place_and_print_the_same(guest, monkeypatch):
    image = patched_once(guest)
    cmdline = f"n=0 pte_update={STORES}"
    spy = Spy(monkeypatch)
    output, exits = run(image, cmdline)
    assert exits[Exit.PTWR] >= STORES
    assert spy.ip_writes[True] == 0 and spy.invalidations[True] == 0
    assert f"pte_update n={STORES} ".encode() in output
    with monkeypatch.context() as slow:
        through_unicorn(slow)
        spy.ip_writes.clear()
        slow_output, slow_exits = run(image, cmdline)
        # the comparison run did write both the other way
        assert spy.ip_writes[True] >= STORES and spy.invalidations[True] >= STORES
    assert output == slow_output  # the virtual TSC: the same cycles too
    assert exits == slow_exits


@pytest.mark.parametrize("guest", ["nanobench", "nanobench64"])
def test_a_bounced_page_fault_still_writes_eip_through_unicorn(guest, monkeypatch):
    """page_fault: each iteration's #PF goes to the kernel's handler (a mode change:
    the bounce's frame, its CS and stack), whose EIP goes through uc_reg_write."""
    spy = Spy(monkeypatch)
    output, exits = run(patched_once(guest), f"n=0 page_fault={STORES}")
    assert f"page_fault n={STORES} ".encode() in output
    assert spy.ip_writes[False] >= STORES
    assert spy.ip_writes[True] == 0



def test_an_entry_is_stored_in_ram_in_place_and_elsewhere_through_unicorn(monkeypatch):
    """In RAM the entry is there at once, with no uc_mem_write and no code
    invalidation (write_phys there makes one); in memory Unicorn holds (not map_ram's)
    it goes through uc_mem_write, and where nothing is mapped it is UnassignedMemory,
    as write_phys's."""
    invalidated = []
    real_invalidate = QemuFunctions.invalidate_code
    monkeypatch.setattr(QemuFunctions, "invalidate_code",
                        lambda qemu, start, end: invalidated.append(start)
                        or real_invalidate(qemu, start, end))
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    memory = GuestMemory(uc, Cpu(uc))
    memory.map_ram(0x10000)
    uc.mem_map(0x10000, 0x1000)
    invalidated.clear()  # the start-up check's own (machine/qemu_functions.py)
    calls = []
    real = memory_module._mem_write
    monkeypatch.setattr(memory_module, "_mem_write",
                        lambda *args: calls.append(args[1]) or real(*args))
    entry = struct.Struct("<Q")
    memory.write_phys(0xFFF0, entry.pack(1))
    assert invalidated == [0xFFF0]  # the contrast: write_phys drops translated code
    memory.store_entry(0xFFF8, entry, 0x1234_5000_0063)
    assert calls == [] and invalidated == [0xFFF0]
    assert uc.mem_read(0xFFF8, 8) == entry.pack(0x1234_5000_0063)
    memory.store_entry(0x10008, entry, 7)
    assert calls == [0x10008]
    assert uc.mem_read(0x10008, 8) == entry.pack(7)
    with pytest.raises(UnassignedMemory):
        memory.store_entry(0x4000_0000, entry, 7)


# xor eax, eax; xor edx, edx; xor ecx, ecx; div ecx (#DE, a fault); inc eax; inc eax; hlt
DIVIDE_BY_ZERO = bytes.fromhex("31c0" "31d2" "31c9" "f7f1" "40" "40" "f4")
DIV_AT, HLT_AT = 0x3006, 0x300A


def test_eip_stored_in_place_in_a_fault_hook_is_where_the_cpu_resumes():
    """#DE at the div; the hook moves EIP in place past the div and the first inc:
    only the second inc runs, and the run ends at the hlt."""
    cpu = bare_cpu()
    cpu.uc.mem_write(0x3000, DIVIDE_BY_ZERO)
    seen = []

    def on_fault(uc, vector, _):
        seen.append((vector, cpu.ip))
        cpu.ack_exception()
        cpu.resume_after_fault(DIV_AT + 3)

    cpu.uc.hook_add(UC_HOOK_INTR, on_fault)
    cpu.uc.emu_start(0x3000, HLT_AT)
    assert seen == [(0, DIV_AT)]
    assert cpu.read(EAX) == 1
    assert cpu.ip == HLT_AT
