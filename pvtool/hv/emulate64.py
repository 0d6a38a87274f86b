"""What Xen emulates after a #GP from a 64-bit guest kernel (XEN-ABI64.md §1.6,
xen/arch/x86/pv/emul-priv-op.c): moves to and from CR3, and rdmsr/wrmsr of the segment
bases and EFER; the other MSRs as for a 32-bit kernel (hv/emulate_msrs.py). Anything
else keeps its #GP, which the kernel's own handler gets: swapgs and hlt included, as
on Xen.

rdtsc and cpuid never fault at CPL 3 on this CPU (the machine's hooks answer them), so
they never get here; port I/O is the supervisor's port_allowed.
"""

from pvtool.abi.xen64 import hypercall_page_64
from pvtool.hv import emulate_msrs
from pvtool.hv.emulate import CPUID_LEAVES, FORCED_CPUID
from pvtool.hv.emulate_msrs import GeneralProtection
from pvtool.hv.errors import HypercallError
from pvtool.hv.vcpu64 import is_canonical
from pvtool.machine.cpu import CR3, FS_BASE, GPRS64_BY_NAME, GS_BASE, RAX, RCX, RDX, RIP
from pvtool.machine.memory import PageFault, UnassignedMemory
from pvtool.x86.isa import MAX_INSN_SIZE, decode_one
from pvtool.x86.operands import special_register_move
from pvtool.x86.paging import PAGE_SHIFT

MSR_EFER = emulate_msrs.MSR_EFER
RBX = GPRS64_BY_NAME["rbx"]
MSR_FS_BASE = 0xC000_0100
MSR_GS_BASE = 0xC000_0101
MSR_SHADOW_GS_BASE = 0xC000_0102
# guest_efer for a 64-bit PV guest (msr.c): the host's SCE, LME, LMA and NXE.
GUEST_EFER_64 = 1 << 0 | 1 << 8 | 1 << 10 | 1 << 11


class Emulator64:
    """The #GP emulation of a 64-bit PV kernel; counts what it emulated by name."""

    def __init__(self, domain):
        self.domain = domain
        self.cpu = domain.machine.cpu
        self.emulated: dict[str, int] = {}

    def emulate_privileged(self, rip: int) -> bool:
        """Emulate the instruction at RIP if Xen would, and move past it; False leaves
        the #GP to the guest."""
        try:
            code = self.domain.memory.read_virt(rip, MAX_INSN_SIZE)
        except (PageFault, UnassignedMemory):
            return False
        insn = decode_one(code, rip, 64)
        if insn is None:
            return False
        handler = self._handler(insn)
        if handler is None:
            return False
        try:
            handler(insn)
        except GeneralProtection:
            return False
        self.emulated[insn.mnemonic] = self.emulated.get(insn.mnemonic, 0) + 1
        if self.domain.trace:
            self.domain.log(f"emulate {insn.mnemonic} {insn.op_str} at {rip:#x}".rstrip())
        self.cpu.write(RIP, rip + insn.size)
        return True

    def forced_cpuid(self, rip: int) -> bool:
        """The #UD of Xen's forced-emulation prefix (ud2; "xen"; cpuid), which Xen
        honours for every PV guest in any mode (pv/emul-inv-op.c): answer from the
        CPUID a PV kernel is shown (hv/emulate.py) and go on past both; False if RIP
        holds anything else. cpuid writes all of RAX-RDX, zero-extended."""
        try:
            code = self.domain.memory.read_virt(rip, len(FORCED_CPUID))
        except (PageFault, UnassignedMemory):
            return False
        if code != FORCED_CPUID:
            return False
        leaf = CPUID_LEAVES.get(self.cpu.read(RAX) & 0xFFFFFFFF, (0, 0, 0, 0))
        for reg, value in zip((RAX, RBX, RCX, RDX), leaf, strict=True):
            self.cpu.write(reg, value)
        self.cpu.write(RIP, rip + len(FORCED_CPUID))
        self.emulated["cpuid"] = self.emulated.get("cpuid", 0) + 1
        return True

    def _handler(self, insn):
        if insn.mnemonic == "rdmsr":
            return self._rdmsr
        if insn.mnemonic == "wrmsr":
            return self._wrmsr
        move = special_register_move(insn)
        if move is not None and move.bank == "cr" and move.number == 3:
            return self._write_cr3 if move.write else self._read_cr3
        return None

    # -- CR3 -------------------------------------------------------------------------
    def _read_cr3(self, insn) -> None:
        """xen_pfn_to_cr3 of the kernel L4: in kernel mode, the CR3 in force."""
        move = special_register_move(insn)
        self.cpu.write(GPRS64_BY_NAME[move.gpr], self.cpu.read(CR3))

    def _write_cr3(self, insn) -> None:
        """new_guest_cr3, as MMUEXT_NEW_BASEPTR: the table is validated first; one that
        is refused is the guest's #GP."""
        move = special_register_move(insn)
        mfn = self.cpu.read(GPRS64_BY_NAME[move.gpr]) >> PAGE_SHIFT
        try:
            self.domain.pagetables.new_baseptr(mfn)
        except HypercallError as refusal:
            raise GeneralProtection(f"mov to cr3 of frame {mfn:#x}: {refusal.why}") from None

    # -- MSRs ------------------------------------------------------------------------
    def _rdmsr(self, insn) -> None:
        msr = self.cpu.read(RCX) & 0xFFFFFFFF
        state = self.domain.vcpu.long_mode
        if msr == MSR_FS_BASE:
            value = self.cpu.read(FS_BASE)
        elif msr == MSR_GS_BASE:
            value = self.cpu.read(GS_BASE)
        elif msr == MSR_SHADOW_GS_BASE:
            value = state.gs_base_user(self.cpu)
        elif msr == MSR_EFER:
            value = GUEST_EFER_64
        else:
            value = emulate_msrs.read(self.domain, msr, state.trap_table)
        self.cpu.write(RAX, value & 0xFFFFFFFF)
        self.cpu.write(RDX, value >> 32)

    def _wrmsr(self, insn) -> None:
        msr = self.cpu.read(RCX) & 0xFFFFFFFF
        value = (self.cpu.read(RDX) & 0xFFFFFFFF) << 32 | self.cpu.read(RAX) & 0xFFFFFFFF
        state = self.domain.vcpu.long_mode
        if msr in (MSR_FS_BASE, MSR_GS_BASE, MSR_SHADOW_GS_BASE) and not is_canonical(value):
            raise GeneralProtection(f"wrmsr {msr:#x} of non-canonical {value:#x}")
        if msr == MSR_FS_BASE:
            self.cpu.write(FS_BASE, value)
        elif msr == MSR_GS_BASE:
            self.cpu.write(GS_BASE, value)
        elif msr == MSR_SHADOW_GS_BASE:
            state.set_gs_base_user(self.cpu, value)
        elif msr == MSR_EFER:
            if value != GUEST_EFER_64:
                raise GeneralProtection(f"wrmsr EFER of {value:#x}")
        else:
            emulate_msrs.write(self.domain, msr, value, hypercall_page_64)
