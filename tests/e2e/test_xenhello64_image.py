"""xenhello64's image, as a 64-bit Xen domain builder and the ABI see it (the boot
itself is tests of the 64-bit hypervisor): the Xen notes of a 64-bit Linux
(XEN-ABI64.md 1.8), program headers whose physical addresses are the pseudo-physical
ones (PADDR_OFFSET 0), and a kernel that reaches the hypervisor only through its
hypercall page: no `syscall` of its own outside the ring-3 program's page, every call
into the page on a 32-byte entry, every jump into it to HYPERVISOR_iret's entry."""

import struct

import capstone
import pytest
from elftools.elf.elffile import ELFFile

from tests.oracles import guest_path

VIRT_BASE = 0xFFFFFFFF80000000
HV_START_LOW = 0xFFFF800000000000
PAGE = 4096
HYPERCALL_ENTRY = 32
IRET = 23

# elfnote.h's numbers (XEN-ABI.md "Boot").
ENTRY, HYPERCALL_PAGE, VIRT_BASE_NOTE, PADDR_OFFSET, XEN_VERSION, GUEST_OS = 1, 2, 3, 4, 5, 6
LOADER, PAE_MODE, FEATURES, HV_START_LOW_NOTE = 8, 9, 10, 12


def xen_notes(data: bytes) -> dict[int, bytes]:
    """The "Xen" notes of a PT_NOTE segment by type: each note is namesz, descsz and
    type (u32 each), then the name and the description, each padded to 4 bytes."""
    notes, at = {}, 0
    while at < len(data):
        namesz, descsz, kind = struct.unpack_from("<3I", data, at)
        name_at = at + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        if data[name_at:name_at + namesz] == b"Xen\0":
            notes[kind] = data[desc_at:desc_at + descsz]
        at = desc_at + (descsz + 3) // 4 * 4
    return notes


@pytest.fixture(scope="module")
def image():
    path = guest_path("xenhello64")
    with path.open("rb") as stream:
        elf = ELFFile(stream)
        symbols = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()}
        notes = {}
        for segment in elf.iter_segments(type="PT_NOTE"):
            notes.update(xen_notes(segment.data()))
        sections = {s.name: (s["sh_addr"], s.data()) for s in elf.iter_sections()
                    if s["sh_flags"] & 2}
        loads = [(s["p_vaddr"], s["p_paddr"]) for s in elf.iter_segments(type="PT_LOAD")]
        yield elf, symbols, notes, sections, loads


def text(note: bytes) -> bytes:
    return note.rstrip(b"\0")


def quad(note: bytes) -> int:
    return struct.unpack("<Q", note)[0]


def test_notes_are_those_of_a_64_bit_kernel(image):
    elf, symbols, notes, _, _ = image

    assert elf.elfclass == 64 and elf["e_machine"] == "EM_X86_64"
    assert text(notes[GUEST_OS]) == b"xenhello64"
    assert text(notes[XEN_VERSION]) == b"xen-3.0"
    assert text(notes[LOADER]) == b"generic"
    assert text(notes[PAE_MODE]) == b"yes"
    assert text(notes[FEATURES]) == b"!writable_page_tables|pae_pgdir_above_4gb"
    assert quad(notes[VIRT_BASE_NOTE]) == VIRT_BASE
    assert quad(notes[PADDR_OFFSET]) == 0
    assert quad(notes[HV_START_LOW_NOTE]) == HV_START_LOW
    assert quad(notes[ENTRY]) == symbols["_start"] == elf["e_entry"]
    assert quad(notes[HYPERCALL_PAGE]) == symbols["hypercall_page"]
    assert symbols["hypercall_page"] % PAGE == 0


def test_segments_load_at_their_pseudo_physical_addresses(image):
    _, _, _, _, loads = image

    assert loads
    assert all(vaddr == paddr + VIRT_BASE for vaddr, paddr in loads)


def instructions(address: int, code: bytes) -> list:
    decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    decoder.detail = True
    decoded = list(decoder.disasm(code, address))
    assert sum(i.size for i in decoded) == len(code), "capstone stopped before the end"
    return decoded


def test_the_kernel_calls_xen_only_through_the_hypercall_page(image):
    _, symbols, _, sections, _ = image
    page = symbols["hypercall_page"]
    calls, jumps, traps = [], [], []
    for insn in instructions(*sections[".text"]):
        target = None
        if insn.mnemonic in ("call", "jmp") and insn.operands[0].type == capstone.x86.X86_OP_IMM:
            target = insn.operands[0].imm & (1 << 64) - 1  # capstone gives it signed
        if target is not None and page <= target < page + PAGE:
            (calls if insn.mnemonic == "call" else jumps).append(target - page)
        if insn.mnemonic in ("syscall", "sysenter", "int"):
            traps.append(insn.mnemonic)

    assert traps == []
    assert calls and all(offset % HYPERCALL_ENTRY == 0 for offset in calls)
    assert jumps and set(jumps) == {IRET * HYPERCALL_ENTRY}


def test_the_ring_3_program_makes_its_system_calls_with_syscall(image):
    _, symbols, _, sections, _ = image
    address, page = sections[".utext"]
    code = page[:symbols["greeting"] - address]  # its message follows its code

    assert address == symbols["user_program"] and len(page) == PAGE
    assert [i.mnemonic for i in instructions(address, code)].count("syscall") == 3
