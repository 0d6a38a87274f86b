"""Emulating privileged instructions for a PV domain, as Xen's emulate_privileged_op
does: on a trap site the patcher recorded (an int3 standing for the original
instruction), and on the #GP an unpatched privileged instruction raises in ring 1.

A patched kernel keeps its virtual control registers in a block of its own memory
(the pvtool note `vcpu_regs`), which its stubs read without exits; the emulator uses
the same block, so a trap site and a stub always agree. A kernel without one (written
for Xen, or unpatched) gets registers kept by the hypervisor.
"""

import struct

from pvtool.abi import pvtool as pvabi
from pvtool.abi.pvtool import TRAP_SITE, VCPU_REGS
from pvtool.abi.xen import XEN_VERSION
from pvtool.hv.domain import Domain
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.image.elf import ElfImage
from pvtool.machine.cpu import EAX, EBX, ECX, EDX, EIP, GPRS_BY_NAME
from pvtool.machine.memory import PageFault
from pvtool.machine.stop import Stop, StopKind
from pvtool.x86.catalogue import classify
from pvtool.x86.isa import MAX_INSN_SIZE, decode_one
from pvtool.x86.operands import special_register_move
from pvtool.x86.paging import PAGE_SIZE
from pvtool.x86.registers import CR0_PG, CR0_TS

MODE = 32
# Debug registers at reset (SDM Vol. 3B, 17.2): DR6 and DR7 have fixed bits set.
DEBUG_REGISTERS_AT_RESET = {6: 0xFFFF0FF0, 7: 0x400}

# Xen's forced-emulation prefix (ud2; "xen") before a cpuid: "emulate this cpuid".
FORCED_CPUID = bytes.fromhex("0f0b78656e") + bytes.fromhex("0fa2")


def _regs(text: bytes) -> tuple[int, int, int]:
    return struct.unpack("<3I", text)


# The CPUID a PV kernel is shown, fixed so runs are reproducible: leaf -> (EAX, EBX,
# ECX, EDX); any other leaf reads as zeros. Leaf 1: family 6 model 6, FPU TSC MSR PAE
# CX8 CMOV MMX FXSR SSE SSE2 and the hypervisor bit (ECX 31). 0x40000000-2 are Xen's:
# the "XenVMMXenVMM" signature and the last leaf, the version (major << 16 | minor),
# and one hypercall page with its MSR at 0x40000000.
CPUID_LEAVES = {
    0: (1, *_regs(b"GenuntelineI")),
    1: (0x663, 0, 1 << 31, 0x0780_8171),
    0x4000_0000: (0x4000_0002, *_regs(b"XenVMMXenVMM")),
    0x4000_0001: (XEN_VERSION[0] << 16 | XEN_VERSION[1], 0, 0, 0),
    0x4000_0002: (1, 0x4000_0000, 0, 0),
}


class ControlRegisters:
    """The kernel's virtual CR0/CR3/CR4: in its own memory, or the hypervisor's."""

    def __init__(self, domain: Domain, block: int | None):
        self.domain = domain
        self.block = block
        self.private = {"cr0": 0x80000011, "cr3": 0, "cr4": 0}

    def get(self, name: str) -> int:
        if self.block is None and name == "cr3":
            # Xen answers with the current base (a kernel written for Xen keeps no
            # copy: it switched with NEW_BASEPTR, or was given pt_base).
            return self.domain.pagetables.base_mfn * PAGE_SIZE
        if self.block is None:
            return self.private[name]
        return struct.unpack("<I", self.domain.copy_from_guest(
            self.block + VCPU_REGS.offset(name), 4))[0]

    def set(self, name: str, value: int) -> None:
        if self.block is None:
            self.private[name] = value
        else:
            self.domain.copy_to_guest(self.block + VCPU_REGS.offset(name),
                                      struct.pack("<I", value & 0xFFFFFFFF))


class Emulator:
    def __init__(self, domain: Domain, trap_sites: dict[int, bytes], regs_block: int | None):
        self.domain = domain
        self.trap_sites = trap_sites  # int3 address -> the original instruction's bytes
        self.regs = ControlRegisters(domain, regs_block)
        self.msrs: dict[int, int] = {}
        self.debug_registers = dict(DEBUG_REGISTERS_AT_RESET)
        self.emulated: dict[str, int] = {}

    @classmethod
    def for_image(cls, domain: Domain, image: ElfImage) -> "Emulator":
        sites: dict[int, bytes] = {}
        block = None
        for note in image.notes:
            if note.name != pvabi.PVTOOL_NOTE_NAME:
                continue
            if note.type == pvabi.PvtoolNote.trap_sites:
                address, count = struct.unpack("<II", note.desc[:8])
                table = image.read_virtual(address, count * TRAP_SITE.size)
                for i in range(count):
                    entry = TRAP_SITE.unpack(table[i * TRAP_SITE.size:(i + 1) * TRAP_SITE.size])
                    sites[entry["address"]] = entry["original"][:entry["length"]]
            elif note.type == pvabi.PvtoolNote.vcpu_regs:
                (block,) = struct.unpack("<I", note.desc[:4])
        return cls(domain, sites, block)

    # -- entry points --------------------------------------------------------------------
    def is_trap_site(self, address: int) -> bool:
        return address in self.trap_sites

    def emulate_trap_site(self, address: int) -> None:
        original = self.trap_sites[address]
        insn = decode_one(original, address, MODE)
        if insn is None or not self._emulate(insn):
            raise DomainCrash(f"trap site {address:#010x} ({original.hex()}) cannot be emulated")

    def forced_cpuid(self, eip: int) -> bool:
        """The #UD of Xen's forced-emulation prefix: answer the cpuid after it from
        CPUID_LEAVES and go on past both; False if EIP holds anything else."""
        try:
            code = self.domain.memory.read_virt(eip, len(FORCED_CPUID))
        except PageFault:
            return False
        if code != FORCED_CPUID:
            return False
        vcpu = self.domain.vcpu
        leaf = CPUID_LEAVES.get(vcpu.get(EAX), (0, 0, 0, 0))
        for reg, value in zip((EAX, EBX, ECX, EDX), leaf, strict=True):
            vcpu.set(reg, value)
        vcpu.set(EIP, eip + len(FORCED_CPUID))
        self.emulated["cpuid"] = self.emulated.get("cpuid", 0) + 1
        return True

    def emulate_privileged(self, eip: int) -> bool:
        """Emulate the instruction at EIP if it is one Xen emulates; False to bounce #GP."""
        try:
            code = self.domain.memory.read_virt(eip, MAX_INSN_SIZE)
        except PageFault:
            return False
        insn = decode_one(code, eip, MODE)
        return insn is not None and self._emulate(insn)

    # -- the instructions ------------------------------------------------------------------
    def _emulate(self, insn) -> bool:
        cls = classify(insn)
        handler = getattr(self, f"_op_{cls.name}", None) if cls else None
        if handler is None:
            return False
        try:
            # A handler returns None to go on after the instruction, or where to go on
            # (an emulated iret or far transfer).
            next_eip = handler(insn)
        except HypercallError as refusal:
            raise DomainCrash(f"emulating {insn.mnemonic} {insn.op_str} at "
                              f"{insn.address:#x}: {refusal.why}") from None
        self.emulated[cls.name] = self.emulated.get(cls.name, 0) + 1
        if self.domain.machine.stop is None:
            self.domain.vcpu.set(EIP, insn.address + insn.size if next_eip is None
                                 else next_eip)
        return True

    def _op_cli(self, insn) -> None:
        self.domain.upcall_mask = 1

    def _op_sti(self, insn) -> None:
        self.domain.upcall_mask = 0

    def _op_hlt(self, insn) -> None:
        """Wait for the next event, as SCHEDOP_block does; with the virtual IF clear
        nothing can ever wake the vCPU."""
        if self.domain.upcall_mask:
            self.domain.machine.request_stop(
                Stop(StopKind.HALTED, "hlt with events masked", insn.address))
        else:
            self.domain.machine.block()

    def _op_wbinvd(self, insn) -> None:
        """Caches are the hypervisor's: nothing to do."""

    _op_invd = _op_wbinvd

    def _op_clts(self, insn) -> None:
        self.domain.fpu_ts = False
        self.regs.set("cr0", self.regs.get("cr0") & ~CR0_TS)

    def _op_invlpg(self, insn) -> None:
        self.domain.pagetables.flush_tlb()

    def _op_mov_from_cr0(self, insn) -> None:
        self._set_gpr(insn, self.regs.get("cr0"))

    def _op_mov_from_cr3(self, insn) -> None:
        self._set_gpr(insn, self.regs.get("cr3"))

    def _op_mov_from_cr4(self, insn) -> None:
        self._set_gpr(insn, self.regs.get("cr4"))

    def _op_mov_from_cr2(self, insn) -> None:
        vcpu_cr2 = pvabi.vcpu0_field_va(False, "cr2")
        self._set_gpr(insn, struct.unpack("<I", self.domain.memory.read_virt(vcpu_cr2, 4))[0])

    def _op_mov_to_cr3(self, insn) -> None:
        value = self._gpr(insn)
        self.regs.set("cr3", value)
        if self.regs.get("cr0") & CR0_PG:
            self.domain.pagetables.new_baseptr(value >> 12)

    def _op_mov_to_cr0(self, insn) -> None:
        old, new = self.regs.get("cr0"), self._gpr(insn)
        if old & CR0_PG and not new & CR0_PG:
            raise DomainCrash("the kernel turned paging off, which a PV domain cannot do")
        self.regs.set("cr0", new)
        self.domain.fpu_ts = bool(new & CR0_TS)
        if new & CR0_PG and not old & CR0_PG:
            self.domain.pagetables.new_baseptr(self.regs.get("cr3") >> 12)

    def _op_mov_to_cr4(self, insn) -> None:
        self.regs.set("cr4", self._gpr(insn))

    def _op_mov_to_dr(self, insn) -> None:
        """Xen emulates debug-register moves for a PV kernel (set_debugreg); the
        values are kept, breakpoints are not armed (Unicorn has no debug unit)."""
        self.debug_registers[special_register_move(insn).number] = self._gpr(insn)

    def _op_mov_from_dr(self, insn) -> None:
        number = special_register_move(insn).number
        self._set_gpr(insn, self.debug_registers.get(number, 0))

    def _op_rdmsr(self, insn) -> None:
        value = self.msrs.get(self.domain.vcpu.get(ECX), 0)
        self.domain.vcpu.set(EAX, value & 0xFFFFFFFF)
        self.domain.vcpu.set(EDX, value >> 32)

    def _op_wrmsr(self, insn) -> None:
        vcpu = self.domain.vcpu
        self.msrs[vcpu.get(ECX)] = vcpu.get(EDX) << 32 | vcpu.get(EAX)

    # -- operands ------------------------------------------------------------------------
    def _gpr(self, insn) -> int:
        return self.domain.vcpu.get(GPRS_BY_NAME[special_register_move(insn).gpr])

    def _set_gpr(self, insn, value: int) -> None:
        self.domain.vcpu.set(GPRS_BY_NAME[special_register_move(insn).gpr], value)
