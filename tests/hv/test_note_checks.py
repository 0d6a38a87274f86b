"""The "Xen" notes Xen refuses to build a domain from, refused the same way and with
Xen's reason (xen/common/libelf/libelf-dominfo.c: elf_xen_note_check,
elf_xen_addr_calc_check), and the ones it honours or ignores booting as they should."""

import pytest

from pvtool.abi.xen import ElfNote
from pvtool.errors import UnsupportedImageError
from pvtool.hv.boot import boot_pv_domain
from pvtool.image.elf import load_elf
from pvtool.machine.cpu import EIP
from pvtool.machine.pc import Machine
from tests.hv.harness import boot
from tests.hv.xenguest import DEFAULT_NOTES


def notes_with(**changes: str | None) -> tuple[tuple[int, str], ...]:
    """DEFAULT_NOTES with the named notes' directives replaced (None: dropped), then
    any named note it lacks added."""
    wanted = {ElfNote[name]: desc for name, desc in changes.items()}
    kept = tuple((t, wanted.pop(t, d)) for t, d in DEFAULT_NOTES)
    return tuple((t, d) for t, d in (*kept, *wanted.items()) if d is not None)


def refusal(build, **changes) -> str:
    guest = build("", notes=notes_with(**changes))
    with pytest.raises(UnsupportedImageError) as error:
        boot_pv_domain(Machine(ram_size=16 << 20, output=lambda _: None),
                       load_elf(guest.path))
    return str(error.value)


def test_a_loader_other_than_generic_is_refused(build):
    assert "only loads images built for the generic loader or Linux" in \
        refusal(build, loader='.asciz "netbsd"')


def test_a_linux_guest_os_needs_no_loader_note(build):
    guest = build("", notes=notes_with(loader=None, guest_os='.asciz "linux"'))
    booted = boot(guest)
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"


def test_a_kernel_for_another_xen_version_is_refused(build):
    assert "only loads images built for Xen v3.0 (XEN_VERSION 'xen-2.0')" in \
        refusal(build, xen_version='.asciz "xen-2.0"')
    assert "(XEN_VERSION None)" in refusal(build, xen_version=None)


def test_paddr_offset_without_virt_base_is_refused(build):
    assert "ELF_PADDR_OFFSET set, VIRT_BASE unset" in \
        refusal(build, virt_base=None, paddr_offset=".long 0")


def test_an_entry_outside_the_kernel_is_refused(build):
    assert "ELF start or entries are out of bounds" in refusal(build, entry=".long 0x400000")


def test_init_p2m_inside_the_kernel_is_out_of_bounds_and_elsewhere_unsupported(build):
    assert "P->M table base is out of bounds" in refusal(build, init_p2m=".long _start")
    assert "pvtool always maps the p2m list after the kernel" in \
        refusal(build, init_p2m=".long 0x40000000")


def test_hv_start_low_above_xens_start_is_refused_and_below_it_accepted(build):
    assert "expects too high a hypervisor start address" in \
        refusal(build, hv_start_low=".long 0xFD000000")
    guest = build("", notes=notes_with(hv_start_low=".long 0xF0000000"))
    assert boot(guest).cpu.read(EIP) == guest["_start"]


@pytest.mark.parametrize("name, desc", [
    ("suspend_cancel", ".long 1"), ("l1_mfn_valid", ".quad 1, 1"),
    ("supported_features", ".long 1"), ("mod_start_pfn", ".long 1"),
    ("phys32_entry", ".long 0x100000"), ("guest_version", '.asciz "1.0"'),
    ("bsd_symtab", '.asciz "no"')])
def test_notes_xens_pv_builder_ignores_leave_the_boot_as_it_was(build, name, desc):
    guest = build("", notes=notes_with(**{name: desc}))
    booted = boot(guest)
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"
