"""Assembling a patch set's glue: the functions its rewrites call, placed in .pvtext
after the hypercall page, with every encoding checked (x86/isa.assemble_checked).

Functions call each other by absolute address, so their sizes and addresses depend on
one another; assembling is repeated until the layout stops moving.
"""

from collections.abc import Callable
from dataclasses import dataclass

from pvtool.abi import pvtool as pvabi
from pvtool.abi import xen, xen64
from pvtool.abi.layouts import SHARED_INFO, START_INFO
from pvtool.abi.xen64 import START_INFO_64, VCPU_INFO_64
from pvtool.errors import PatchError
from pvtool.image import multiboot
from pvtool.patch import pvdata64
from pvtool.patch.patchset import PatchSet
from pvtool.x86 import msrs, paging
from pvtool.x86.descriptors import DPL_SHIFT, PRESENT_BIT, S_BIT, TYPE_SHIFT, SystemType
from pvtool.x86.isa import assemble_checked, assemble_unchecked
from pvtool.x86.paging import PagingMode
from pvtool.x86.registers import CR0_PG, CR0_TS, EFLAGS_IF
from pvtool.x86.tss import TSS64_RSP0

MAX_PASSES = 8


@dataclass(frozen=True)
class Glue:
    base: int
    code: bytes
    functions: dict[str, int]  # name -> address

    @property
    def end(self) -> int:
        return self.base + len(self.code)


def _shared_symbols(hypercall_page: int, kernel_entry: int) -> dict[str, int]:
    """The numbers both widths' glue use: the hypercall page's entries, the hypercalls'
    sub-commands, the kernel's entry, descriptor fields."""
    symbols = {f"hc_{h.name}": hypercall_page + xen.HYPERCALL_ENTRY_SIZE * h for h in xen.Hypercall}
    symbols.update(
        consoleio_write=xen.ConsoleIO.write,
        multiboot_magic=multiboot.BOOTLOADER_MAGIC,
        kernel_entry=kernel_entry,
        physdevop_set_iopl=xen.PhysdevOp.set_iopl,
        schedop_block=xen.SchedOp.block,
        schedop_poll=xen.SchedOp.poll,
        schedop_shutdown=xen.SchedOp.shutdown,
        domid_self=xen.DOMID_SELF,
        ti_mask_events=xen.TI_MASK_EVENTS,
        cr0_ts=CR0_TS, cr0_ts_shift=CR0_TS.bit_length() - 1, cr0_pg=CR0_PG,
    )
    symbols.update(_descriptor_symbols())
    return symbols


def abi_symbols(hypercall_page: int, kernel_entry: int) -> dict[str, int]:
    """The numbers templates and glue use, all from abi/ and image/multiboot."""
    return _shared_symbols(hypercall_page, kernel_entry) | dict(
        vcpu_mask=pvabi.vcpu0_field_va(False, "evtchn_upcall_mask"),
        vcpu_pending=pvabi.vcpu0_field_va(False, "evtchn_upcall_pending"),
        vcpu_cr2=pvabi.vcpu0_field_va(False, "cr2"),
        start_info_nr_pages=START_INFO.offset("nr_pages"),
        start_info_cmd_line=START_INFO.offset("cmd_line"),
        **{f"start_info_mb_{name}": pvabi.START_INFO_MULTIBOOT + offset
           for name, offset in ((n, pvabi.MULTIBOOT_TABLE.offset(n))
                                for n in pvabi.MULTIBOOT_TABLE.fields)},
        mmuext_new_baseptr=xen.MmuextCmd.new_baseptr,
        mmuext_invlpg_local=xen.MmuextCmd.invlpg_local,
        not_cr0_ts=~CR0_TS & 0xFFFFFFFF,
        kernel_rpl=xen.GUEST_KERNEL_RPL,
    )


def abi_symbols_64(hypercall_page: int, kernel_entry: int, pvdata: int) -> dict[str, int]:
    """The numbers a 64-bit glue uses (patches/xen64), from abi/ and x86/: vcpu_info
    in the page of .pvdata the PV entry maps onto shared_info."""
    vcpu = pvdata + pvdata64.SHARED_INFO_PAGE + SHARED_INFO.offset("vcpu_info")
    return _shared_symbols(hypercall_page, kernel_entry) | dict(
        vcpu_mask=vcpu + VCPU_INFO_64.offset("evtchn_upcall_mask"),
        vcpu_pending=vcpu + VCPU_INFO_64.offset("evtchn_upcall_pending"),
        vcpu_cr2=vcpu + VCPU_INFO_64.offset("cr2"),
        **{f"start_info_{name}": START_INFO_64.offset(name)
           for name in ("nr_pages", "shared_info", "pt_base", "nr_pt_frames", "mfn_list",
                        "cmd_line")},
        **{f"mmuext_{c.name}": c.value for c in xen.MmuextCmd},
        uvmf_invlpg=xen.UVMF.invlpg,
        callbackop_register=xen.CallbackOp.register,
        callbackf_mask_events=xen.CALLBACKF_MASK_EVENTS,
        **{f"callbacktype_{t.name}": t.value for t in xen.CallbackType},
        **{f"segbase_{b.name}": b.value for b in xen64.SegmentBase},
        vgcf_in_syscall=xen64.VGCF_IN_SYSCALL,
        # Xen's flat selectors; a 64-bit PV kernel and its user programs share them
        kernel_cs=xen64.FLAT_KERNEL_CS64, kernel_ss=xen64.FLAT_KERNEL_SS64,
        # the CS of an iret frame that returns to kernel mode: RPL 0-2 says so, RPL 3
        # would switch to user mode (XEN-ABI64.md "CS in the frame")
        kernel_return_cs=xen64.FLAT_KERNEL_CS64 & ~3,
        user_cs=xen64.FLAT_KERNEL_CS64, user_ss=xen64.FLAT_KERNEL_SS64,
        user_l4_slots=xen64.USER_L4_SLOTS,
        first_upper_slot=xen64.XEN_L4_SLOTS.stop,
        page_user=paging.US, page_large=paging.PS, page_accessed=paging.A,
        **{f"hypercall_nr_{h.name}": int(h) for h in xen.Hypercall},
        page_guest_kernel_bit=xen64.PAGE_GUEST_KERNEL.bit_length() - 1,
        not_cr0_ts=~CR0_TS,
        tss_rsp0=TSS64_RSP0,
        eflags_if=EFLAGS_IF, eflags_if_shift=EFLAGS_IF.bit_length() - 1,
        pte_flags=paging.P | paging.RW | paging.A | paging.D,
        pte_flags_ro=paging.P | paging.A,
        table_flags=paging.P | paging.RW | paging.US | paging.A | paging.D,
        pte_address_mask=paging.address_mask(PagingMode.FOUR_LEVEL, 1),
        **{f"msr_{name.lower()}": getattr(msrs, name)
           for name in ("FS_BASE", "GS_BASE", "KERNEL_GS_BASE", "LSTAR", "CSTAR", "STAR",
                        "SFMASK", "IA32_SYSENTER_EIP", "IA32_SYSENTER_ESP",
                        "IA32_SYSENTER_CS")},
    )


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
    return _substitute(template, _as_text(symbols), where)


def _as_text(symbols: dict[str, int | str]) -> dict[str, str]:
    return {k: (hex(v) if isinstance(v, int) else v) for k, v in symbols.items()}


def _substitute(template: str, values: dict[str, str], where: str) -> str:
    try:
        return template.format_map(values)
    except KeyError as exc:
        raise PatchError(f"{where}: unknown name {exc.args[0]!r} in a template") from None


def assemble_glue(patch_set: PatchSet, base: int, symbols: dict[str, int]) -> Glue:
    """The glue at BASE. A first pass, every function placed at BASE, only sizes the
    functions (assemble_unchecked: the bytes assemble_checked would give, not decoded
    back); every later pass is checked, and the layout is taken once a checked pass
    puts every function where the pass before placed it, usually the second."""
    _, addresses = _assemble_once(patch_set, base,
                                  symbols | dict.fromkeys(patch_set.glue, base),
                                  assemble_unchecked)
    for _ in range(MAX_PASSES):
        code, placed = _assemble_once(patch_set, base, symbols | addresses, assemble_checked)
        if placed == addresses:
            return Glue(base, code, placed)
        addresses = placed
    raise PatchError(f"{patch_set.name}: glue layout did not settle")


def _assemble_once(patch_set: PatchSet, base: int, symbols: dict[str, int],
                   assemble: Callable[[str, int, int], bytes]) -> tuple[bytes, dict[str, int]]:
    code = bytearray()
    placed = {}
    values = _as_text(symbols)
    for name, source in patch_set.glue.items():
        address = base + len(code)
        placed[name] = address
        text = _substitute(source, values, f"{patch_set.name}/glue.asm:{name}")
        code += assemble(text, address, patch_set.mode)
    return bytes(code), placed
