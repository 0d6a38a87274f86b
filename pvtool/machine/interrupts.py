"""Interrupt and exception delivery through the guest's IDT, as the hardware does it
(Intel SDM vol. 3, 6.12). Unicorn never reads the IDT: every `int n` and every fault
reaches the INTR hook, and this module does what the CPU would have done.
"""

import struct

from pvtool.machine.cpu import CR2, CS, EFLAGS, EIP, ESP, GDTR, IDTR, SS, Cpu
from pvtool.machine.exits import Exit
from pvtool.machine.memory import GuestMemory, PageFault
from pvtool.machine.stop import Stop, StopKind
from pvtool.x86.descriptors import GateDescriptor, SystemType
from pvtool.x86.registers import EFLAGS_IF, EFLAGS_NT, EFLAGS_RF, EFLAGS_TF, TSS32_ESP0
from pvtool.x86.vectors import CONTRIBUTORY, ERROR_CODE, FIRST_EXTERNAL, Vector, idt_error_code

INT_IMM8, INT3, INTO = 0xCD, 0xCC, 0xCE


class DeliveryFault(Exception):
    """Delivery itself faulted: the vector and error code to raise instead."""

    def __init__(self, vector: int, error_code: int = 0, address: int | None = None):
        super().__init__(vector, error_code)
        self.vector = vector
        self.error_code = error_code
        self.address = address  # for #PF: the linear address CR2 receives


class NativeInterrupts:
    """The native trap handler: every vector goes to the guest's own IDT."""

    def __init__(self, cpu: Cpu, memory: GuestMemory, request_stop, exits):
        self.cpu = cpu
        self.memory = memory
        self.request_stop = request_stop
        self.exits = exits

    def on_interrupt(self, vector: int) -> None:
        eip = self.cpu.read(EIP)
        software = is_software_interrupt(self.memory, vector, eip)
        self.exits[Exit.INTERRUPT if software else Exit.EXCEPTION] += 1
        error_code = None
        if not software and vector in ERROR_CODE:
            error_code = self.cpu.fault_error_code()
        self.deliver(vector, error_code=error_code, software=software, return_eip=eip)
        if not software:
            self.cpu.ack_exception()

    def interrupts_enabled(self) -> bool:
        return bool(self.cpu.read(EFLAGS) & EFLAGS_IF)

    def take_interrupt(self, pic) -> None:
        """Between instructions: if the PIC raises INTR and IF is set, run the INTA
        cycle and deliver the vector it names."""
        if pic.pending() and self.interrupts_enabled():
            self.exits[Exit.IRQ] += 1
            vector = pic.acknowledge()
            self.deliver(vector, error_code=None, software=False,
                         return_eip=self.cpu.read(EIP))

    def deliver(self, vector: int, *, error_code: int | None, software: bool,
                return_eip: int) -> None:
        """Deliver one vector; a fault while delivering becomes #DF, a fault while
        delivering #DF a triple fault, which stops the machine as a PC would reset."""
        try:
            self._deliver_once(vector, error_code, software, return_eip)
        except DeliveryFault as first:
            if vector == Vector.DF:
                self._triple_fault(return_eip)
                return
            if first.vector == Vector.PF:
                self.cpu.write(CR2, first.address)
            if not software and _is_double_fault(vector, first.vector):
                self.deliver(Vector.DF, error_code=0, software=False, return_eip=return_eip)
                return
            # Otherwise the second exception is delivered itself (SDM table 6-5); for a
            # software interrupt with the instruction as the return address (it did not
            # complete): `int n` is two bytes, int3 and into one.
            if software:
                return_eip -= 2 if _ends_with_int_imm8(self.memory, vector, return_eip) else 1
            self.deliver(first.vector, error_code=first.error_code, software=False,
                         return_eip=return_eip)

    def _deliver_once(self, vector: int, error_code: int | None, software: bool,
                      return_eip: int) -> None:
        idt_base, idt_limit = self.cpu.descriptor_table(IDTR)
        if vector * 8 + 7 > idt_limit:
            raise DeliveryFault(Vector.GP, idt_error_code(vector))
        raw = self._read(idt_base + vector * 8, 8)
        gate = GateDescriptor.decode(raw)
        is_system = not raw[5] & 0x10  # S = 0: a code or data segment is no gate
        if not is_system or gate.type not in (SystemType.INTERRUPT_GATE, SystemType.TRAP_GATE):
            raise DeliveryFault(Vector.GP, idt_error_code(vector))
        if software and gate.dpl < self.cpu.cpl:
            raise DeliveryFault(Vector.GP, idt_error_code(vector))
        if not gate.present:
            raise DeliveryFault(Vector.NP, idt_error_code(vector))
        cpl = self.cpu.cpl
        target = self._code_segment_dpl(gate.selector)
        if target > cpl or (target < cpl and target != 0):
            # Only ring 0 handlers are reached with a stack switch (a PC kernel's case).
            raise DeliveryFault(Vector.GP, gate.selector & ~3)
        eflags = self.cpu.read(EFLAGS)
        frame = [return_eip, self.cpu.read(CS), eflags]
        stack = self.cpu.read(ESP)
        if target < cpl:
            ss0, stack = self._ring0_stack()
            frame += [self.cpu.read(ESP), self.cpu.read(SS)]
        if error_code is not None:
            frame.insert(0, error_code)
        esp = (stack - 4 * len(frame)) & 0xFFFFFFFF
        self._write(esp, struct.pack(f"<{len(frame)}I", *frame))
        eflags &= ~(EFLAGS_TF | EFLAGS_NT | EFLAGS_RF)
        if gate.type == SystemType.INTERRUPT_GATE:
            eflags &= ~EFLAGS_IF
        if target < cpl:
            self.cpu.enter_ring0(cs=gate.selector, ss=ss0, esp=esp, eip=gate.offset,
                                 eflags=eflags)
            return
        self.cpu.write(ESP, esp)
        self.cpu.write(EFLAGS, eflags)
        if gate.selector != self.cpu.read(CS):
            self.cpu.write(CS, gate.selector)
        self.cpu.write(EIP, gate.offset)

    def _code_segment_dpl(self, selector: int) -> int:
        """The DPL of the code segment a gate names (from the GDT)."""
        gdt_base, gdt_limit = self.cpu.descriptor_table(GDTR)
        index = selector & ~7
        if selector & 4 or index == 0 or index + 7 > gdt_limit:
            raise DeliveryFault(Vector.GP, selector & ~3)
        descriptor = int.from_bytes(self._read(gdt_base + index, 8), "little")
        return (descriptor >> 45) & 3

    def _ring0_stack(self) -> tuple[int, int]:
        """SS0:ESP0 from the 32-bit TSS in TR (SDM 7.2.1)."""
        _, tss = self.cpu.task_register()
        esp0, ss0 = struct.unpack("<IH", self._read(tss + TSS32_ESP0, 6))
        return ss0, esp0

    def _read(self, vaddr: int, size: int) -> bytes:
        try:
            return self.memory.read_virt(vaddr, size)
        except PageFault as fault:
            raise DeliveryFault(Vector.PF, fault.error_code, fault.vaddr) from None

    def _write(self, vaddr: int, data: bytes) -> None:
        try:
            self.memory.write_virt(vaddr, data)
        except PageFault as fault:
            raise DeliveryFault(Vector.PF, fault.error_code, fault.vaddr) from None

    def _triple_fault(self, eip: int) -> None:
        self.request_stop(Stop(StopKind.TRIPLE_FAULT,
                               "triple fault (a fault while delivering a double fault)", eip))


def _is_double_fault(first: int, second: int) -> bool:
    """SDM vol. 3, table 6-5 (QEMU's check_exception): contributory then contributory,
    or #PF then contributory or #PF, make #DF; any other pair is handled serially."""
    if first in CONTRIBUTORY:
        return second in CONTRIBUTORY
    return first == Vector.PF and (second in CONTRIBUTORY or second == Vector.PF)


def _ends_with_int_imm8(memory: GuestMemory, vector: int, eip: int) -> bool:
    try:
        return memory.read_virt((eip - 2) & 0xFFFFFFFF, 2) == bytes((INT_IMM8, vector))
    except PageFault:
        return False


def is_software_interrupt(memory: GuestMemory, vector: int, eip: int) -> bool:
    """Whether the INTR hook's vector came from `int n`/`int3`/`into` (EIP after the
    instruction) rather than a fault (EIP on the instruction). Unicorn reports both the
    same way, so look at the bytes before EIP: #BP and #OF only come from instructions,
    vectors from 32 up only from `int n` (pvtool injects IRQs itself), and a low vector
    is software when `int vector` ends at EIP."""
    if vector >= FIRST_EXTERNAL or vector in (Vector.BP, Vector.OF):
        return True
    try:
        before = memory.read_virt((eip - 2) & 0xFFFFFFFF, 2)
    except PageFault:
        return False
    return before == bytes((INT_IMM8, vector))
