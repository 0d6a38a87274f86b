"""Changing the CPU's privilege from a hook, which Unicorn's reg_write cannot do
downwards (shared/UNICORN.md, "Privilege levels").

Ring 0 is entered from any ring with the real-mode SS trick (Cpu.enter_ring0). A less
privileged ring is entered the way the CPU itself would: by executing `iretd` from a
trampoline page, with the frame the iretd pops written beside it. The trampoline
belongs to whoever maps it in every address space (the hypervisor, in its own range);
this module only uses it.
"""

import struct
from dataclasses import dataclass

from pvtool.machine.cpu import CS, EIP, ESP, RIP, RSP, SS, Cpu
from pvtool.machine.memory import GuestMemory
from pvtool.x86.registers import EFLAGS_RESERVED


@dataclass(frozen=True)
class Trampoline:
    """An `iretd` at CODE and room for its 20-byte frame at FRAME, both at the same
    virtual and physical address and executable at ring 0 and at the kernel's ring;
    RING0_CS and RING0_SS are flat ring-0 selectors of the GDT in use."""

    code: int
    frame: int
    ring0_cs: int
    ring0_ss: int


@dataclass(frozen=True)
class IretqTrampoline:
    """An `iretq` at virtual address CODE and room for its 40-byte frame at virtual
    FRAME (physical FRAME_PHYS), both mapped in the page tables in use (supervisor-only
    is enough); RING0_CS and RING0_SS are ring-0 64-bit code and data selectors of the
    GDT in use."""

    code: int
    frame: int
    frame_phys: int
    ring0_cs: int
    ring0_ss: int


def enter_cpl3_long_mode(cpu: Cpu, memory: GuestMemory, trampoline: IretqTrampoline, *,
                         cs: int, rip: int, ss: int, rsp: int, rflags: int) -> None:
    """From CPL 0 in long mode, continue at CS:RIP on SS:RSP with RFLAGS: the iretq
    runs first thing in the next slice (until then RIP is the trampoline's)."""
    memory.write_phys(trampoline.frame_phys, struct.pack("<5Q", rip, cs, rflags, rsp, ss))
    cpu.write(CS, trampoline.ring0_cs)
    cpu.write(SS, trampoline.ring0_ss)
    cpu.write(RSP, trampoline.frame)
    cpu.write(RIP, trampoline.code)


class RingSwitch:
    def __init__(self, cpu: Cpu, memory: GuestMemory, trampoline: Trampoline):
        self.cpu = cpu
        self.memory = memory
        self.trampoline = trampoline

    def enter(self, from_ring: int, to_ring: int, *, cs: int, eip: int, ss: int,
              esp: int, eflags: int) -> None:
        """Continue at CS:EIP on SS:ESP in TO_RING, the CPU being in FROM_RING. The
        iretd runs first thing in the next slice: until then EIP is the trampoline's."""
        if to_ring == 0:
            self.cpu.enter_ring0(cs=cs, ss=ss, esp=esp, eip=eip, eflags=eflags)
            return
        tramp = self.trampoline
        self.memory.write_phys(tramp.frame, struct.pack("<5I", eip, cs, eflags, esp, ss))
        if from_ring > to_ring:  # only ring 0 can be reached upwards: iretd from there
            self.cpu.enter_ring0(cs=tramp.ring0_cs, ss=tramp.ring0_ss, esp=tramp.frame,
                                 eip=tramp.code, eflags=EFLAGS_RESERVED)
        else:
            self.cpu.write(ESP, tramp.frame)
            self.cpu.write(EIP, tramp.code)
