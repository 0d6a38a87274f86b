"""The .pvdata section a patched kernel gets: the virtual-CPU registers its stubs keep,
the Multiboot information its PV entry builds, hypercall argument blocks, the trap
table buffer, the reasons the glue prints when it gives up, and the page-aligned GDT
shadow. Its layout is fixed, so every address is known before any instruction is
placed.

Every address the glue and the rewrites use is one of `symbols()`, computed here
from the ABI layouts (abi/), so no offset is typed twice.
"""

from dataclasses import dataclass

from pvtool.abi import pvtool as pvabi
from pvtool.abi.layouts import MMUEXT_OP, PHYSDEV_SET_IOPL, SCHED_POLL, SCHED_SHUTDOWN, TRAP_INFO
from pvtool.abi.xen import FIRST_RESERVED_GDT_ENTRY, ShutdownReason
from pvtool.image import multiboot
from pvtool.x86.descriptors import DESCRIPTOR_SIZE
from pvtool.x86.paging import PAGE_SIZE

# Offsets inside the first page of .pvdata.
REGS = 0x000
MBI = 0x040
MMUEXT = MBI + multiboot.INFO_SIZE + 12  # 0x0c0
IOPL_ARG = MMUEXT + 16
POLL_ARG = IOPL_ARG + 16
SHUTDOWN_ARG = POLL_ARG + 16
START_INFO_PTR = SHUTDOWN_ARG + 8
GDT_FRAMES = 0x140
TRAP_INFO_BUF = 0x200
TRAP_INFO_ENTRIES = 257  # every vector and the terminating entry
FAILURES = TRAP_INFO_BUF + TRAP_INFO_ENTRIES * TRAP_INFO.size
# The PV entry's stack, at the end of the first page: the builder's boot stack is
# mapped only at the kernel's link address, which the identity map does not cover,
# while the glue window is mapped in every address space (docs/ABI.md).
PV_STACK = 0xE00
PV_STACK_TOP = PAGE_SIZE
GDT_SHADOW = PAGE_SIZE
# HYPERVISOR_set_gdt takes the entries below Xen's reserved ones: 14 frames
# (xen/include/public/arch-x86/xen.h, FIRST_RESERVED_GDT_ENTRY). The CPU allows 8,192
# descriptors; pv_lgdt shadows the first 7,168 and refuses a GDT with a present
# descriptor past them.
GDT_SHADOW_ENTRIES = FIRST_RESERVED_GDT_ENTRY
GDT_SHADOW_SIZE = GDT_SHADOW_ENTRIES * DESCRIPTOR_SIZE
GDT_SHADOW_FRAMES = GDT_SHADOW_SIZE // PAGE_SIZE

# Why the glue gives up: pv_fatal prints the reason named here on the emergency
# console (console_io), then crashes the domain; pvtool's error line carries the line
# (GLUE_FAILURE_PREFIX, abi/pvtool.py). Each is stored as a u32 length and the text.
GLUE_FAILURES = {
    "iopl": "PHYSDEVOP_set_iopl refused I/O privilege for ring 1",
    "paging_off": "the kernel cleared CR0.PG: a PV kernel cannot turn paging off",
    "mmuext": "mmuext_op refused a new page directory or an invlpg",
    "gdt_reserved": f"lgdt: a present descriptor at entry {FIRST_RESERVED_GDT_ENTRY} or "
                    "above, where Xen keeps its own GDT entries",
    "set_gdt": "lgdt: HYPERVISOR_set_gdt refused the GDT",
    "set_trap_table": "lidt: HYPERVISOR_set_trap_table refused the IDT's gates",
    "stack_switch": "ltr: HYPERVISOR_stack_switch refused the TSS's SS0:ESP0",
    "ldt": "lldt of a non-null LDT: only the null LDT is supported",
}


@dataclass(frozen=True)
class PvData:
    base: int  # page-aligned virtual address of .pvdata (in the glue window)
    phys_base: int  # its physical address (in the domain's frames)

    @property
    def gdt_shadow(self) -> int:
        return self.base + GDT_SHADOW

    @property
    def memsz(self) -> int:
        return GDT_SHADOW + GDT_SHADOW_SIZE

    def symbols(self) -> dict[str, int]:
        b = self.base
        regs = pvabi.VCPU_REGS
        info = multiboot.INFO_FIELDS
        return {
            **{f"regs_{name}": b + REGS + regs.offset(name) for name in regs.fields},
            "mbi": b + MBI,
            "mbi_mem_upper": b + MBI + info["mem_upper"],
            "mbi_cmdline": b + MBI + info["cmdline"],
            "mbi_mods_count": b + MBI + info["mods_count"],
            "mbi_mods_addr": b + MBI + info["mods_addr"],
            "mmuext": b + MMUEXT,
            "mmuext_cmd": b + MMUEXT + MMUEXT_OP.offset("cmd"),
            "mmuext_arg1": b + MMUEXT + MMUEXT_OP.offset("arg1"),
            "iopl_arg": b + IOPL_ARG,
            "poll_arg": b + POLL_ARG,
            "shutdown_crash_arg": b + SHUTDOWN_ARG,
            "start_info_ptr": b + START_INFO_PTR,
            "gdt_frames": b + GDT_FRAMES,
            "trap_info": b + TRAP_INFO_BUF,
            "gdt_shadow": self.gdt_shadow,
            "pv_stack_top": b + PV_STACK_TOP,
            "gdt_shadow_entries": GDT_SHADOW_ENTRIES,
            **{f"failure_{name}": b + offset for name, offset in _failure_offsets().items()},
        }

    def contents(self) -> bytes:
        """The file-backed bytes; the GDT shadow after them is zero-filled memory."""
        data = bytearray(GDT_SHADOW)
        put(data, REGS, pvabi.VCPU_REGS.pack(cr0=multiboot.CR0_AT_ENTRY))
        # the command line and the module list come from pvtool's Multiboot table beside
        # start_info (docs/ABI.md)
        put(data, MBI, multiboot_info(multiboot.INFO_MEMORY | multiboot.INFO_CMDLINE
                                      | multiboot.INFO_MODS))
        put(data, IOPL_ARG, PHYSDEV_SET_IOPL.pack(iopl=1))
        put(data, POLL_ARG, SCHED_POLL.pack())
        put(data, SHUTDOWN_ARG, SCHED_SHUTDOWN.pack(reason=ShutdownReason.crash))
        frames = [(self.phys_base + GDT_SHADOW) // PAGE_SIZE + i for i in range(GDT_SHADOW_FRAMES)]
        put(data, GDT_FRAMES, b"".join(f.to_bytes(4, "little") for f in frames))
        for name, offset in _failure_offsets().items():
            put(data, offset, failure_record(GLUE_FAILURES[name]))
        return bytes(data)


def failure_record(text: str) -> bytes:
    """One failure reason as the glue's pv_fatal reads it: a u32 length, then the line."""
    line = f"{pvabi.GLUE_FAILURE_PREFIX}{text}\n".encode()
    return len(line).to_bytes(4, "little") + line


def failure_offsets(failures: dict[str, str], start: int, limit: int,
                    align: int) -> dict[str, int]:
    """Each failure reason's place from START, each ALIGN-aligned, all before LIMIT."""
    offsets, offset = {}, start
    for name, text in failures.items():
        offsets[name] = offset
        offset += -(-len(failure_record(text)) // align) * align
    if offset > limit:
        raise ImportError("the glue's failure reasons run past the space they are given")
    return offsets


def _failure_offsets() -> dict[str, int]:
    """Each failure reason's place after the trap table buffer, all in the first page."""
    return failure_offsets(GLUE_FAILURES, FAILURES, PV_STACK, 4)


def multiboot_info(flags: int) -> bytes:
    """The information structure a PV entry completes, with FLAGS and mem_lower as
    QEMU's loader always gives it (machine/loader.py)."""
    info = bytearray(multiboot.INFO_SIZE)
    fields = multiboot.INFO_FIELDS
    put(info, fields["flags"], flags.to_bytes(4, "little"))
    put(info, fields["mem_lower"], multiboot.PC_CONVENTIONAL_MEMORY_KIB.to_bytes(4, "little"))
    return bytes(info)


def put(buf: bytearray, offset: int, data: bytes) -> None:
    buf[offset:offset + len(data)] = data
