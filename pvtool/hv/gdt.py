"""A vCPU's GDT: guest descriptors, checked, beside Xen's reserved ones.

Each vCPU has a GDT of its own (Xen's v->arch.pv.gdt_frames and gdt_ents): set_gdt
and VCPUOP_initialise's gdt_frames set the calling or the initialised vCPU's. Its real
GDT is a set of hypervisor frames (hv/layout.py, vcpu_gdt), mapped read-only at an
address of its own in the private area (ADDRESS), as Xen maps each vCPU's GDT in its
slice of the per-domain area; the vCPU's GDTR points there, so the CPU changes GDT
with the vCPU's saved context (hv/scheduler.py), as Xen's context switch loads the
next vCPU's GDTR.

set_gdt copies the guest's descriptors into the real GDT's first entries after Xen's
check_descriptor rules: code and data descriptors with DPL 0 are raised to the
kernel's ring, call gates are kept, every other system descriptor is refused. pvtool
copies where Xen maps the guest's frames, so a later write by the guest into its own
frames has no effect until update_descriptor, which changes the entry in every
vCPU's GDT made of that frame, as Xen's shared mapping does; the accessed bit is preset so the CPU
never writes the table.
"""

import struct
from typing import TYPE_CHECKING

from pvtool.abi.xen import FIRST_RESERVED_GDT_ENTRY, GUEST_KERNEL_RPL, Errno
from pvtool.abi.xen64 import GUEST_KERNEL_RPL_64
from pvtool.hv import layout, layout64
from pvtool.hv.errors import HypercallError
from pvtool.x86.descriptors import (
    ACCESSED,
    CODE,
    CONFORMING,
    DESCRIPTOR_SIZE,
    DPL_SHIFT,
    PRESENT_BIT,
    READABLE,
    S_BIT,
    TYPE_SHIFT,
    WRITABLE,
    SegmentDescriptor,
    SystemType,
    gdt_offset,
)
from pvtool.x86.paging import PAGE_SIZE

if TYPE_CHECKING:
    from pvtool.hv.domain import Domain

ENTRIES_PER_FRAME = PAGE_SIZE // DESCRIPTOR_SIZE
_ACCESSED = ACCESSED << TYPE_SHIFT
_CODE = CODE << TYPE_SHIFT  # with S: a code segment
_CONFORMING = CONFORMING << TYPE_SHIFT  # with _CODE
_WRITABLE = WRITABLE << TYPE_SHIFT  # without _CODE
_READABLE = READABLE << TYPE_SHIFT  # with _CODE
LONG_MODE_BIT = 1 << 53  # L: a 64-bit code segment (SDM Vol. 3A, 3.4.5)
USER_RPL = 3


def check_descriptor(desc: int, kernel_rpl: int = GUEST_KERNEL_RPL) -> int:
    """The descriptor as installed, or HypercallError if the guest may not have it.
    A DPL below the guest kernel's ring (KERNEL_RPL: 1 for a 32-bit kernel, 3 for a
    64-bit one) is raised to it (Xen's check_descriptor, __fixup_guest_selector)."""
    if not desc & PRESENT_BIT:
        return 0
    dpl = (desc >> DPL_SHIFT) & 3
    if dpl < kernel_rpl:
        desc = (desc & ~(3 << DPL_SHIFT)) | kernel_rpl << DPL_SHIFT
    if desc & S_BIT:
        return desc | _ACCESSED
    if (desc >> TYPE_SHIFT) & 0xF != SystemType.CALL_GATE:
        raise HypercallError(Errno.EINVAL, f"system descriptor {desc:#018x} is not allowed")
    target = (desc >> 16) & 0xFFFF
    if target & 3 < kernel_rpl:
        desc = (desc & ~(0xFFFF << 16)) | (target | kernel_rpl) << 16
    return desc


class Gdt:
    """vCPU VCPU_ID's real GDT, born with Xen's reserved descriptors and no guest
    entries: at machine address BASE, mapped at ADDRESS."""

    def __init__(self, domain: "Domain", vcpu_id: int = 0):
        self.domain = domain
        self.base = layout.vcpu_gdt(vcpu_id)
        self.frames: tuple[int, ...] = ()
        self.entries = 0
        wide = domain.machine.cpu.bits == 64
        self.kernel_rpl = GUEST_KERNEL_RPL_64 if wide else GUEST_KERNEL_RPL
        self.limit = layout64.GDT_LIMIT if wide else layout.GDT_LIMIT
        private = layout64.PRIVATE if wide else layout.PRIVATE
        self.address = private + layout.vcpu_gdt_offset(vcpu_id)
        reserved = layout64.reserved_gdt_entries() if wide else layout.reserved_gdt_entries()
        for index, desc in reserved.items():
            self._write(index, desc)

    def set_gdt(self, frames: tuple[int, ...], entries: int) -> None:
        """Replace the guest part of the GDT (HYPERVISOR_set_gdt)."""
        if entries > FIRST_RESERVED_GDT_ENTRY:
            raise HypercallError(Errno.EINVAL, f"{entries} GDT entries reach Xen's own")
        for mfn in frames:
            if not self.domain.owns_frame(mfn):
                raise HypercallError(Errno.EINVAL, f"GDT frame {mfn:#x} is not the domain's")
        raw = b"".join(self.domain.memory.read_phys(mfn * PAGE_SIZE, PAGE_SIZE) for mfn in frames)
        checked = [check_descriptor(d, self.kernel_rpl)
                   for d in struct.unpack_from(f"<{entries}Q", raw)]
        for index in range(max(entries, self.entries)):
            self._write(index, checked[index] if index < entries else 0)
        self.frames, self.entries = frames, entries

    def update_descriptor(self, machine_address: int, desc: int) -> None:
        """Change one entry of a descriptor frame (HYPERVISOR_update_descriptor): in
        every vCPU's GDT made of that frame, since Xen maps the frame itself into each
        GDT that uses it and the change shows in all of them at once."""
        if machine_address & 7:
            raise HypercallError(Errno.EINVAL, "descriptor address is not 8-byte aligned")
        mfn, offset = machine_address >> 12, machine_address & 0xFFF
        if not self.domain.owns_frame(mfn):
            raise HypercallError(Errno.EINVAL, f"frame {mfn:#x} is not the domain's")
        # Xen wants a descriptor or writable page: a page table in use never is.
        self.domain.pagetables.make_writable(mfn)
        checked = check_descriptor(desc, self.kernel_rpl)
        self.domain.memory.write_phys(machine_address, struct.pack("<Q", desc))
        for vcpu in self.domain.vcpus:
            vcpu.gdt.refresh(mfn, offset, checked)

    def refresh(self, mfn: int, offset: int, checked: int) -> None:
        """The entry at OFFSET of frame MFN changed to CHECKED: copy it if this GDT
        is made of that frame and reaches the entry."""
        if mfn in self.frames:
            index = self.frames.index(mfn) * ENTRIES_PER_FRAME + offset // 8
            if index < self.entries:
                self._write(index, checked)

    def is_code_selector(self, selector: int, ring: int) -> bool:
        """Whether an iret to RING may load SELECTOR into CS: a present code segment
        of the real GDT, RPL = RING, and DPL = RING (DPL <= RING if conforming), as
        the CPU checks it (SDM "IRET"). A failed check here is a domain crash, not a
        fault inside the hypervisor's own trampoline."""
        desc = self._descriptor(selector)
        if desc is None or selector & 3 != ring or not desc & _CODE:
            return False
        dpl = (desc >> DPL_SHIFT) & 3
        return dpl <= ring if desc & _CONFORMING else dpl == ring

    def is_user_code64(self, selector: int) -> bool:
        """Whether SELECTOR names a 64-bit user code segment of the guest's (RPL and
        DPL 3, L set): a 64-bit kernel's own user CS, which HYPERVISOR_iret takes as
        Xen does any valid code selector of the guest's GDT."""
        desc = self._descriptor(selector)
        return desc is not None and selector & 3 == USER_RPL and bool(desc & _CODE) \
            and bool(desc & LONG_MODE_BIT) and (desc >> DPL_SHIFT) & 3 == USER_RPL

    def is_stack_selector(self, selector: int, ring: int) -> bool:
        """Whether an iret to RING may load SELECTOR into SS: a present writable data
        segment with RPL = DPL = RING (SDM "IRET")."""
        desc = self._descriptor(selector)
        if desc is None or selector & 3 != ring or desc & _CODE \
                or not desc & _WRITABLE:
            return False
        return (desc >> DPL_SHIFT) & 3 == ring

    def data_descriptor(self, selector: int) -> SegmentDescriptor | None:
        """What loading SELECTOR (not null) into DS, ES, FS or GS at CPL 0 brings in,
        as Xen's loadsegment does on a context switch: a present data or readable
        code segment whose DPL is at least the RPL (any DPL for conforming code), SDM
        "MOV". None where the load faults (an LDT selector too: pvtool has no LDT)."""
        desc = self._descriptor(selector)
        if desc is None:
            return None
        if desc & _CODE and not desc & _READABLE:
            return None
        conforming = desc & _CODE and desc & _CONFORMING
        if not conforming and (desc >> DPL_SHIFT) & 3 < selector & 3:
            return None
        return SegmentDescriptor.decode(desc)

    def _descriptor(self, selector: int) -> int | None:
        """The present code or data descriptor SELECTOR names in the real GDT."""
        offset = gdt_offset(selector, self.limit)
        if offset is None:
            return None
        (desc,) = struct.unpack("<Q", self.domain.memory.read_phys(self.base + offset,
                                                                   DESCRIPTOR_SIZE))
        return desc if desc & PRESENT_BIT and desc & S_BIT else None

    def _write(self, index: int, desc: int) -> None:
        self.domain.memory.write_phys(self.base + 8 * index, struct.pack("<Q", desc))
