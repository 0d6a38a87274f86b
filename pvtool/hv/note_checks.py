"""What Xen refuses to build from a PV kernel's "Xen" notes, checked as its libelf
does before loading anything (xen/common/libelf/libelf-dominfo.c: elf_xen_note_check,
elf_xen_addr_calc_check), with Xen's reasons in the error line.

The notes the builder does not act on are the ones Xen's builder ignores for a 32-bit
PV domU too: INFO, GUEST_VERSION, SUSPEND_CANCEL and L1_MFN_VALID (read by the
toolstack's save and restore, which pvtool has not), SUPPORTED_FEATURES (ORed into the
features the kernel supports: it asks nothing of the hypervisor), PHYS32_ENTRY (PVH
only) and MOD_START_PFN (it lets Xen leave an initrd unmapped when the boot mapping
cannot hold it; pvtool's always can, so mod_start stays a virtual address, as Xen's
does then). docs/ABI.md lists them with INIT_P2M, the one pvtool refuses.
"""

from pvtool.abi.xen import ElfNote
from pvtool.errors import UnsupportedImageError
from pvtool.image.elf import ElfImage
from pvtool.image.xen_notes import XenNotes

GENERIC_LOADER = "generic"  # LOADER, or a GUEST_OS starting "linux"
LINUX = "linux"
XEN_3_0 = "xen-3.0"  # XEN_VERSION must start with it
PAE_L2_SPAN = 2 << 20  # HV_START_LOW is rounded up to an L2 entry's span (dom0_build.c)


def check_notes(image: ElfImage, notes: XenNotes, kernel_end: int,
                hypervisor_start: int, kernel_start: int | None = None) -> None:
    """Refuse, as Xen would, a kernel whose notes it would not build; KERNEL_END is
    the kernel's last virtual byte (after its symbol table, if loaded), and
    HYPERVISOR_START where the hypervisor's own virtual range begins. KERNEL_START is
    where the builder loaded the kernel's first byte (default: its lowest p_vaddr)."""
    start = _kernel_start(image) if kernel_start is None else kernel_start
    _check_loader(image, notes)
    _check_addresses(image, notes, start, kernel_end)
    _check_p2m(notes, start, kernel_end, image)
    _check_hypervisor_start(image, notes, hypervisor_start)


def _refuse(image: ElfImage, reason: str) -> UnsupportedImageError:
    return UnsupportedImageError(f"{image.path}: {reason}")


def _check_loader(image: ElfImage, notes: XenNotes) -> None:
    if not (notes.loader or "").startswith(GENERIC_LOADER) \
            and not (notes.guest_os or "").startswith(LINUX):
        raise _refuse(image, "Xen only loads images built for the generic loader or "
                             f"Linux (LOADER {notes.loader!r}, GUEST_OS {notes.guest_os!r})")
    if not (notes.xen_version or "").startswith(XEN_3_0):
        raise _refuse(image, "Xen only loads images built for Xen v3.0 "
                             f"(XEN_VERSION {notes.xen_version!r})")


def _check_addresses(image: ElfImage, notes: XenNotes, start: int, kernel_end: int) -> None:
    if ElfNote.paddr_offset in notes.raw and ElfNote.virt_base not in notes.raw:
        raise _refuse(image, "ELF_PADDR_OFFSET set, VIRT_BASE unset")
    # A patched kernel's glue window (docs/ABI.md) is part of the image too.
    kernel_end = max([kernel_end, *(seg.vaddr + seg.memsz for seg in image.segments)])
    if not (notes.virt_base <= start <= notes.entry <= kernel_end):
        raise _refuse(image, f"ELF start or entries are out of bounds (kernel "
                             f"{start:#x}-{kernel_end:#x}, entry {notes.entry:#x}, "
                             f"VIRT_BASE {notes.virt_base:#x})")


def _check_p2m(notes: XenNotes, start: int, kernel_end: int, image: ElfImage) -> None:
    if notes.init_p2m is None:
        return
    if start <= notes.init_p2m < kernel_end:
        raise _refuse(image, "P->M table base is out of bounds (INIT_P2M "
                             f"{notes.init_p2m:#x} inside the kernel)")
    raise _refuse(image, f"INIT_P2M {notes.init_p2m:#x}: pvtool always maps the p2m "
                         "list after the kernel (docs/ABI.md)")


def _check_hypervisor_start(image: ElfImage, notes: XenNotes, hypervisor_start: int) -> None:
    """HV_START_LOW: the kernel leaves the hypervisor everything from there up. Xen
    lowers its own start to it; one above Xen's start cannot be met ("expects too high
    a hypervisor start address", xen/arch/x86/pv/dom0_build.c)."""
    if notes.hv_start_low is None:
        return
    wanted = -(-notes.hv_start_low // PAE_L2_SPAN) * PAE_L2_SPAN
    if wanted > hypervisor_start:
        raise _refuse(image, f"HV_START_LOW {notes.hv_start_low:#x} expects too high a "
                             f"hypervisor start address (Xen's is {hypervisor_start:#x})")


def _kernel_start(image: ElfImage) -> int:
    loaded = [seg.vaddr for seg in image.segments if seg.memsz]
    return min(loaded) if loaded else 0
