"""The trap sites of a patched 64-bit kernel: an int3 the patcher left where no
rewrite fits (every 5-byte window cut by a branch target), standing for the original
instruction, which pvtool's note trap_sites records in its 64-bit form
(pvtool/image/pvtool_notes.py). The kernel reaches one in kernel mode; the hypervisor
does what patches/xen64's rewrite of that instruction would have done, and the
kernel goes on after the original instruction.

The classes a 64-bit trap site may stand for are TRAP_SITE_CLASSES_64, which the
patcher checks its 64-bit placements against and this module's table covers exactly
(checked when it is imported): the virtual IF (cli, sti), hlt, iretq and retfq, the
instructions found cut by branch targets in kernels' idle loops, interrupt returns
and far returns,
and the debug-register moves, which patches/xen64 leaves to the hypervisor as Xen's
emulator does them (set_debugreg, get_debugreg).
"""

import struct
from collections.abc import Callable

from pvtool.abi.pvtool import TRAP_SITE_CLASSES_64, VCPU_REGS_64
from pvtool.abi.xen64 import FLAT_KERNEL_CS64, FLAT_KERNEL_SS64
from pvtool.hv.domain import PvDomain
from pvtool.hv.errors import DomainCrash, HypercallError
from pvtool.hv.hypercalls.traps64 import iret
from pvtool.machine.cpu import GPRS64_BY_NAME, R11, RAX, RCX, RSP
from pvtool.machine.stop import Stop, StopKind
from pvtool.x86.catalogue import BY_NAME, classify
from pvtool.x86.isa import decode_one
from pvtool.x86.operands import special_register_move

WORD = struct.Struct("<Q")
RPL_MASK = 3
# The CS an iret frame returning to kernel mode carries: Xen's flat kernel CS with RPL
# 0, since RPL 3 means a return to user mode (XEN-ABI64.md "CS in the frame").
KERNEL_RETURN_CS = FLAT_KERNEL_CS64 & ~RPL_MASK
# Below the frame iretq pops, HYPERVISOR_iret finds what the hypercall page's iret
# entry pushes and the flags word before it (XEN-ABI64.md 1.3; abi/layouts.py
# IRET_CONTEXT_64: rax, r11, rcx, flags).
XEN_IRET_WORDS = 4
IRET_ENTRY = VCPU_REGS_64.offset("iret_entry")

Handler = Callable[["TrapSites64", int, object], int | None]


class TrapSites64:
    """The trap sites of one domain: int3 address -> the original instruction."""

    def __init__(self, domain: PvDomain, sites: dict[int, bytes]):
        self.domain = domain
        self.sites = sites
        self.emulated: dict[str, int] = {}

    @property
    def iret_entry(self) -> int:
        """The glue's pv_iret as its PV entry recorded it in vcpu_regs; 0 if none."""
        regs = self.domain.regs_block
        if regs is None:
            return 0
        try:
            return WORD.unpack(self.domain.copy_from_guest(regs + IRET_ENTRY, WORD.size))[0]
        except HypercallError:
            raise DomainCrash(f"the vcpu_regs at {regs:#x} are not mapped") from None

    def is_trap_site(self, address: int) -> bool:
        return address in self.sites

    def emulate(self, address: int) -> int:
        """Emulate the site at ADDRESS; return where the kernel goes on."""
        original = self.sites[address]
        insn = decode_one(original, address, 64)
        cls = classify(insn) if insn is not None else None
        handler = HANDLERS.get(cls.name) if cls is not None else None
        if handler is None:
            raise DomainCrash(f"trap site {address:#x} ({original.hex()}) cannot be "
                              "emulated: not one of the 64-bit trap-site classes")
        resume = handler(self, address + insn.size, insn)
        self.emulated[cls.name] = self.emulated.get(cls.name, 0) + 1
        if self.domain.trace:
            self.domain.log(f"emulate trap site {insn.mnemonic} at {address:#x}")
        return address + insn.size if resume is None else resume


def mask_events(sites: TrapSites64, next_ip: int, insn) -> None:
    """cli: the upcall mask is the virtual IF (the cli rule's store)."""
    sites.domain.upcall_mask = 1


def unmask_events(sites: TrapSites64, next_ip: int, insn) -> None:
    """sti: clear the mask; a pending event is delivered on the way back."""
    sites.domain.upcall_mask = 0


def halt(sites: TrapSites64, next_ip: int, insn) -> None:
    """hlt, as the hlt rule's SCHEDOP_block: wait for the next event; with the virtual
    IF clear (the rule's SCHEDOP_poll on no port) nothing can wake the vCPU."""
    domain = sites.domain
    if domain.upcall_mask:
        domain.machine.request_stop(Stop(StopKind.HALTED, "hlt with events masked",
                                         insn.address))
    else:
        domain.machine.block()


def interrupt_return(sites: TrapSites64, next_ip: int, insn) -> int:
    """iretq, as pv_iret does it: a frame returning to the kernel (RPL 0-2) gets Xen's
    flat kernel CS (RPL 0) and SS, since the kernel's own selectors are the bare
    machine's;
    then HYPERVISOR_iret pops it with the words the hypercall page pushes (RAX, R11,
    RCX) and a flags word of 0 below it. A return to user mode goes on in pv_iret
    itself when the glue recorded it, since the glue brings the user L4 in step with
    the kernel's on that way (patches/xen64/glue.asm, pv_user_l4_sync)."""
    if insn.mnemonic != "iretq":
        raise DomainCrash(f"trap site {insn.address:#x}: {insn.mnemonic} is not iretq")
    domain, vcpu = sites.domain, sites.domain.vcpu
    rsp = vcpu.get(RSP)
    frame = list(struct.unpack("<5Q", domain.copy_from_guest(rsp, 40)))
    if frame[1] & RPL_MASK and sites.iret_entry:
        return sites.iret_entry
    if not frame[1] & RPL_MASK:
        frame[1], frame[4] = KERNEL_RETURN_CS, FLAT_KERNEL_SS64
    below = (vcpu.get(RAX), vcpu.get(R11), vcpu.get(RCX), 0)
    start = rsp - XEN_IRET_WORDS * WORD.size
    domain.copy_to_guest(start, struct.pack("<9Q", *below, *frame))
    vcpu.set(RSP, start)
    iret(domain, vcpu, ())
    state = vcpu.long_mode
    resume, state.resume = state.resume, None
    return resume


def far_return(sites: TrapSites64, next_ip: int, insn) -> int:
    """retfq, as pv_retfq does it: a return to the kernel's own code selector (RPL 0-2)
    goes on in the kernel at the popped RIP, on Xen's flat kernel CS; the popped CS
    and RIP leave the stack, and the bytes an immediate names after them. A far return
    to another ring's code from a trap site is not emulated: the domain is crashed."""
    vcpu = sites.domain.vcpu
    rsp = vcpu.get(RSP)
    rip, cs = struct.unpack("<2Q", sites.domain.copy_from_guest(rsp, 16))
    if cs & RPL_MASK:
        raise DomainCrash(f"trap site {insn.address:#x}: retfq to cs {cs & 0xFFFF:#x}, "
                          "another ring's code")
    released = insn.operands[0].imm if insn.operands else 0
    vcpu.set(RSP, rsp + 16 + released)
    return rip


def write_debug_register(sites: TrapSites64, next_ip: int, insn) -> None:
    """mov drN, reg: set_debugreg's checks (hv/debugreg.py); a value Xen refuses
    crashes the domain with its reason."""
    move = special_register_move(insn)
    value = sites.domain.vcpu.get(GPRS64_BY_NAME[move.gpr])
    try:
        sites.domain.debug_registers.write(move.number, value)
    except HypercallError as refusal:
        raise DomainCrash(f"trap site {insn.address:#x}: mov to dr{move.number} of "
                          f"{value:#x}: {refusal.why}") from None


def read_debug_register(sites: TrapSites64, next_ip: int, insn) -> None:
    move = special_register_move(insn)
    try:
        value = sites.domain.debug_registers.read(move.number)
    except HypercallError as refusal:
        raise DomainCrash(f"trap site {insn.address:#x}: mov from dr{move.number}: "
                          f"{refusal.why}") from None
    sites.domain.vcpu.set(GPRS64_BY_NAME[move.gpr], value)


HANDLERS: dict[str, Handler] = {
    "cli": mask_events, "sti": unmask_events, "hlt": halt, "iret": interrupt_return,
    "retfq": far_return, "mov_to_dr": write_debug_register, "mov_from_dr": read_debug_register,
}
if set(HANDLERS) != TRAP_SITE_CLASSES_64 or not set(BY_NAME) >= TRAP_SITE_CLASSES_64:
    raise ImportError(f"trapsites64.py handles {sorted(HANDLERS)}, a 64-bit trap site may "
                      f"stand for {sorted(TRAP_SITE_CLASSES_64)}")
