"""Hardware task switches a patched kernel asks for, named rather than run wrongly.

A far jmp or call to a TSS or a task gate switches tasks on the bare CPU (SDM Vol. 3A,
7.3). Xen's PV ABI has no tasks: set_gdt refuses TSS and task-gate descriptors
(xen/arch/x86/mm.c, check_descriptor), so the patched kernel's glue leaves them out of
the GDT it gives Xen, and such a jmp or call raises #GP in ring 1 on a descriptor that
is not there. Bouncing that #GP to the kernel would go on as if the switch had
happened; instead the domain crashes with a reason naming the switch. The kernel's own
GDT is the one its glue recorded in the regs block (VCPU_REGS gdtr).
"""

import struct
from typing import TYPE_CHECKING

from capstone.x86_const import X86_OP_IMM, X86_OP_MEM

from pvtool.hv.errors import DomainCrash
from pvtool.x86.descriptors import (
    DESCRIPTOR_SIZE,
    PRESENT_BIT,
    S_BIT,
    TYPE_SHIFT,
    SystemType,
    gdt_offset,
)
from pvtool.x86.isa import OPERAND_SIZE_PREFIX

if TYPE_CHECKING:
    from pvtool.hv.emulate import Emulator

DIRECT_FAR = frozenset({0xEA, 0x9A})  # jmp ptr16:32, call ptr16:32 (SDM Vol. 2, JMP, CALL)
INDIRECT_FAR_OPCODE = 0xFF
INDIRECT_FAR_REGS = frozenset({3, 5})  # FF /3 call m16:32, FF /5 jmp m16:32
TASK_TYPES = {SystemType.TSS_AVAILABLE: "a TSS", SystemType.TSS_BUSY: "a busy TSS",
              SystemType.TASK_GATE: "a task gate"}


def refuse_task_switch(em: "Emulator", insn) -> None:
    """Raise DomainCrash if INSN, which raised #GP in ring 1, is a far jmp or call to a
    TSS or task gate of the kernel's GDT; return if it is anything else."""
    selector = _far_selector(em, insn)
    gdtr = em.regs.gdtr()
    if selector is None or gdtr is None:
        return
    limit, base = gdtr
    offset = gdt_offset(selector, limit)
    if offset is None:
        return
    (desc,) = struct.unpack("<Q", em.read(base + offset, DESCRIPTOR_SIZE))
    kind = TASK_TYPES.get((desc >> TYPE_SHIFT) & 0xF)
    if kind is None or desc & S_BIT or not desc & PRESENT_BIT:
        return
    raise DomainCrash(f"{insn.mnemonic} {insn.op_str} at {insn.address:#010x} is a "
                      f"hardware task switch (selector {selector:#x}: {kind}), which a "
                      "PV domain cannot make")


def _far_selector(em: "Emulator", insn) -> int | None:
    """The selector a far jmp or call loads, or None for any other instruction."""
    opcode = insn.opcode[0]
    if opcode in DIRECT_FAR and insn.operands[0].type == X86_OP_IMM:
        return insn.operands[0].imm & 0xFFFF
    if opcode == INDIRECT_FAR_OPCODE and (insn.modrm >> 3) & 7 in INDIRECT_FAR_REGS \
            and insn.operands[0].type == X86_OP_MEM:
        offset_size = 2 if insn.prefix[2] == OPERAND_SIZE_PREFIX else 4  # m16:16, m16:32
        (selector,) = struct.unpack("<H", em.read(em.address(insn) + offset_size, 2))
        return selector
    return None
