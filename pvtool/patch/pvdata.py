"""The .pvdata section a patched kernel gets: the virtual-CPU registers its stubs keep,
the Multiboot information its PV entry builds, hypercall argument blocks, the trap
table buffer and the page-aligned GDT shadow. Its layout is fixed, so every address
is known before any instruction is placed.

Every address the glue and the rewrites use is one of `symbols()`, computed here
from the ABI layouts (abi/), so no offset is typed twice.
"""

from dataclasses import dataclass

from pvtool.abi import pvtool as pvabi
from pvtool.abi.layouts import MMUEXT_OP, PHYSDEV_SET_IOPL, SCHED_POLL, SCHED_SHUTDOWN, TRAP_INFO
from pvtool.abi.xen import ShutdownReason
from pvtool.image import multiboot
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
# The PV entry's stack, at the end of the first page: the builder's boot stack is
# mapped only at the kernel's link address, which the identity map does not cover,
# while the glue window is mapped in every address space (docs/ABI.md).
PV_STACK = 0xE00
PV_STACK_TOP = PAGE_SIZE
GDT_SHADOW = PAGE_SIZE
GDT_SHADOW_SIZE = PAGE_SIZE  # 512 descriptors: pv_lgdt refuses a larger GDT
GDT_SHADOW_FRAMES = GDT_SHADOW_SIZE // PAGE_SIZE


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
            "gdt_shadow_entries": GDT_SHADOW_SIZE // 8,
        }

    def contents(self) -> bytes:
        """The file-backed bytes; the GDT shadow after them is zero-filled memory."""
        data = bytearray(GDT_SHADOW)
        _put(data, REGS, pvabi.VCPU_REGS.pack(cr0=multiboot.CR0_AT_ENTRY))
        _put(data, MBI, _multiboot_info())
        _put(data, IOPL_ARG, PHYSDEV_SET_IOPL.pack(iopl=1))
        _put(data, POLL_ARG, SCHED_POLL.pack())
        _put(data, SHUTDOWN_ARG, SCHED_SHUTDOWN.pack(reason=ShutdownReason.crash))
        frames = [(self.phys_base + GDT_SHADOW) // PAGE_SIZE + i for i in range(GDT_SHADOW_FRAMES)]
        _put(data, GDT_FRAMES, b"".join(f.to_bytes(4, "little") for f in frames))
        assert TRAP_INFO_BUF + TRAP_INFO_ENTRIES * TRAP_INFO.size <= PV_STACK
        return bytes(data)


def _multiboot_info() -> bytes:
    """The information structure pv_entry completes (mem_upper and the command line
    come from start_info at boot)."""
    info = bytearray(multiboot.INFO_SIZE)
    fields = multiboot.INFO_FIELDS
    flags = multiboot.INFO_MEMORY | multiboot.INFO_CMDLINE
    _put(info, fields["flags"], flags.to_bytes(4, "little"))
    _put(info, fields["mem_lower"], multiboot.PC_CONVENTIONAL_MEMORY_KIB.to_bytes(4, "little"))
    return bytes(info)


def _put(buf: bytearray, offset: int, data: bytes) -> None:
    buf[offset:offset + len(data)] = data
