"""Assembling a patch set's glue: the functions its rewrites call, placed in .pvtext
after the hypercall page, with every encoding checked (x86/isa.assemble_checked).

Functions call each other by absolute address, so their sizes and addresses depend on
one another; assembling is repeated until the layout stops moving.
"""

from dataclasses import dataclass

from pvtool.abi import pvtool as pvabi
from pvtool.abi import xen
from pvtool.abi.layouts import START_INFO
from pvtool.errors import PatchError
from pvtool.image import multiboot
from pvtool.patch.patchset import PatchSet
from pvtool.x86.descriptors import DPL_SHIFT, PRESENT_BIT, S_BIT, TYPE_SHIFT, SystemType
from pvtool.x86.isa import assemble_checked
from pvtool.x86.registers import CR0_PG, CR0_TS

MAX_PASSES = 8


@dataclass(frozen=True)
class Glue:
    base: int
    code: bytes
    functions: dict[str, int]  # name -> address

    @property
    def end(self) -> int:
        return self.base + len(self.code)


def abi_symbols(hypercall_page: int, kernel_entry: int) -> dict[str, int]:
    """The numbers templates and glue use, all from abi/ and image/multiboot."""
    symbols = {f"hc_{h.name}": hypercall_page + xen.HYPERCALL_ENTRY_SIZE * h for h in xen.Hypercall}
    symbols.update(
        vcpu_mask=pvabi.vcpu0_field_va(False, "evtchn_upcall_mask"),
        vcpu_pending=pvabi.vcpu0_field_va(False, "evtchn_upcall_pending"),
        vcpu_cr2=pvabi.vcpu0_field_va(False, "cr2"),
        start_info_nr_pages=START_INFO.offset("nr_pages"),
        start_info_cmd_line=START_INFO.offset("cmd_line"),
        **{f"start_info_mb_{name}": pvabi.START_INFO_MULTIBOOT + offset
           for name, offset in ((n, pvabi.MULTIBOOT_TABLE.offset(n))
                                for n in pvabi.MULTIBOOT_TABLE.fields)},
        consoleio_write=xen.ConsoleIO.write,
        multiboot_magic=multiboot.BOOTLOADER_MAGIC,
        kernel_entry=kernel_entry,
        physdevop_set_iopl=xen.PhysdevOp.set_iopl,
        schedop_block=xen.SchedOp.block,
        schedop_poll=xen.SchedOp.poll,
        schedop_shutdown=xen.SchedOp.shutdown,
        mmuext_new_baseptr=xen.MmuextCmd.new_baseptr,
        mmuext_invlpg_local=xen.MmuextCmd.invlpg_local,
        domid_self=xen.DOMID_SELF,
        ti_mask_events=xen.TI_MASK_EVENTS,
        cr0_ts=CR0_TS, cr0_ts_shift=CR0_TS.bit_length() - 1, not_cr0_ts=~CR0_TS & 0xFFFFFFFF,
        cr0_pg=CR0_PG,
        kernel_rpl=xen.GUEST_KERNEL_RPL,
    )
    symbols.update(_descriptor_symbols())
    return symbols


def _descriptor_symbols() -> dict[str, int]:
    """Descriptor fields as the glue tests them: in the high dword of an 8-byte
    descriptor (x86/descriptors.py), as `mov edx, [desc + 4]` loads it."""
    high = 32
    type_shift = TYPE_SHIFT - high
    return {
        "desc_hi_s": S_BIT >> high,
        "desc_hi_present": PRESENT_BIT >> high,
        "desc_hi_type_shift": type_shift,
        "desc_hi_type": 0xF << type_shift,
        "desc_hi_call_gate": SystemType.CALL_GATE << type_shift,
        "desc_hi_trap_gate": (SystemType.TRAP_GATE ^ SystemType.INTERRUPT_GATE) << type_shift,
        "desc_hi_dpl_shift": DPL_SHIFT - high,
        # 0xE and 0xF, the 32-bit interrupt and trap gates, share these type bits
        "gate32_types": SystemType.INTERRUPT_GATE & SystemType.TRAP_GATE,
    }


def fill(template: str, symbols: dict[str, int | str], where: str) -> str:
    """Substitute {names}: numbers as hex literals, strings as they are."""
    values = {k: (hex(v) if isinstance(v, int) else v) for k, v in symbols.items()}
    try:
        return template.format_map(values)
    except KeyError as exc:
        raise PatchError(f"{where}: unknown name {exc.args[0]!r} in a template") from None


def assemble_glue(patch_set: PatchSet, base: int, symbols: dict[str, int]) -> Glue:
    names = list(patch_set.glue)
    addresses = dict.fromkeys(names, base)
    for _ in range(MAX_PASSES):
        code, placed = _assemble_once(patch_set, base, symbols | addresses)
        if placed == addresses:
            return Glue(base, code, placed)
        addresses = placed
    raise PatchError(f"{patch_set.name}: glue layout did not settle")


def _assemble_once(patch_set: PatchSet, base: int,
                   symbols: dict[str, int]) -> tuple[bytes, dict[str, int]]:
    code = bytearray()
    placed = {}
    for name, source in patch_set.glue.items():
        address = base + len(code)
        placed[name] = address
        text = fill(source, symbols, f"{patch_set.name}/glue.asm:{name}")
        code += assemble_checked(text, address, patch_set.mode)
    return bytes(code), placed
