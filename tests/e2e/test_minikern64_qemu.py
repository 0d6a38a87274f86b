"""minikern64 on qemu-system-x86_64, the judge of what a 64-bit guest prints: these are
the bytes pvtool's native and paravirtualized runs of minikern64 must reproduce.

Its output is deterministic by design, as minikern's: processes write into logs the
kernel prints in pid order once all have exited, and nothing printed depends on when
interrupts arrive. The one line that changes from boot to boot is the boot counter in
sector 1 of the disk (minikern's record: the two kernels count on the same disks).

The image is an ELF64 that QEMU can boot only through the Multiboot header's a.out
kludge: the header's addresses must describe the ELF's segments exactly, and its entry
must be the 32-bit stub, while the ELF's entry is the 64-bit kernel entry.
"""

import struct
from dataclasses import dataclass
from pathlib import Path

import capstone
import pytest
from elftools.elf.elffile import ELFFile

from tests.oracles import QEMU64, QemuResult, guest_path, run_qemu

DISK_SIZE = 256 * 1024  # a blank disk: no boot record yet
SECTOR = 512
BOOT_RECORD_SECTOR = 1
BOOT_RECORD_MAGIC = b"minikern"

KERNBASE = 0xFFFFFFFF80000000  # guests/include64/kernbase.h
LOAD_ADDRESS = 0x100000

# Multiboot 0.6.96, section 3.1: the header in the image's first 8 KiB, 4-byte aligned.
MULTIBOOT_MAGIC = 0x1BADB002
MULTIBOOT_SEARCH = 8192
AOUT_KLUDGE = 1 << 16

DISK_LINE = b"disk: boot count %d, written, flushed and read back ok\n"
NO_DISK_LINE = b"disk: no ATA disk, boot count 1, not saved\n"

# The lines before and after the disk's.
BOOT_OUTPUT = (
    b"minikern64: long mode, multiboot handoff, 8 MiB of memory ok\n"
    b"gdt: 64-bit kernel and user segments, tss with an interrupt stack loaded\n"
    b"paging: 4-level tables of the kernel's own, kernel in the top 2 GiB, "
    b"program text shared with ring 3 ok\n"
    b"pic: 8259 pair remapped to vectors 32-47, all lines masked ok\n"
    b"idt: 64-bit interrupt gates, double faults on their own stack\n"
    b"syscall: entry and segments in the msrs, EFER.SCE set ok\n"
    b"selftest: after cli, pushfq shows IF clear ok\n"
    b"selftest: popfq restores IF, set and clear ok\n"
    b"selftest: sgdt returns what lgdt loaded ok\n"
    b"selftest: sidt returns what lidt loaded ok\n"
    b"selftest: str returns the tss selector ltr loaded ok\n"
    b"selftest: sldt returns the null selector, no ldt ok\n"
    b"selftest: smsw returns cr0's low bits ok\n"
    b"selftest: cs and ss read as the kernel's selectors, rpl 0 ok\n"
    b"lapic: enabled, timer interrupts arriving ok\n"
    b"timer: 8254 channel 0 at 100 Hz, interrupts arriving ok\n"
)
PROCESS_OUTPUT = (
    b"proc: starting primes chatty mapper intruder\n"
    b"trap: pid 4 (intruder) page fault: write to kernel memory, killed\n"
    b"proc: all 4 processes exited; their output, in pid order:\n"
    b"pid 1 primes | 5133 primes below 50000, the largest 49999\n"
    b"pid 1 primes | every round found the same primes: yes\n"
    b"pid 1 primes: exit 0, preempted: yes ok\n"
    b"pid 2 chatty | round 1: 51 system calls so far\n"
    b"pid 2 chatty | round 2: 103 system calls so far\n"
    b"pid 2 chatty | round 3: 155 system calls so far\n"
    b"pid 2 chatty | round 4: 207 system calls so far\n"
    b"pid 2 chatty | round 5: 260 system calls so far\n"
    b"pid 2 chatty | round 6: 312 system calls so far\n"
    b"pid 2 chatty | round 7: 364 system calls so far\n"
    b"pid 2 chatty | round 8: 416 system calls so far\n"
    b"pid 2 chatty | 420 system calls in all, getpid always 2: yes\n"
    b"pid 2 chatty: exit 0 ok\n"
    b"pid 3 mapper | 64 map, fill, check, unmap cycles: ok\n"
    b"pid 3 mapper | 8 pages at once, remapped pages fresh: ok\n"
    b"pid 3 mapper | 6 of 6 bad requests refused\n"
    b"pid 3 mapper: exit 0 ok\n"
    b"pid 4 intruder | writing to kernel memory\n"
    b"pid 4 intruder: killed ok\n"
    b"kernel: memory the intruder wrote to is unchanged ok\n"
    b"kernel: every page the processes used was freed ok\n"
    b"minikern64: all 32 checks passed\n"
)


def expected_output(disk_line: bytes) -> bytes:
    return BOOT_OUTPUT + disk_line + PROCESS_OUTPUT


def boot_record(disk: Path) -> bytes:
    data = disk.read_bytes()
    return data[BOOT_RECORD_SECTOR * SECTOR:(BOOT_RECORD_SECTOR + 1) * SECTOR]


def record_with_count(count: int) -> bytes:
    """The sector as minikern's bootcount.c writes it: magic, count (32-bit little
    endian), zeros."""
    record = BOOT_RECORD_MAGIC + count.to_bytes(4, "little")
    return record + bytes(SECTOR - len(record))


@dataclass(frozen=True)
class Boot:
    result: QemuResult
    record: bytes  # sector 1 of the disk after this boot


@pytest.fixture(scope="module")
def boots(tmp_path_factory: pytest.TempPathFactory) -> list[Boot]:
    """Two boots of minikern64 on one blank disk, in order."""
    elf = guest_path("minikern64")
    disk = tmp_path_factory.mktemp("minikern64") / "disk.img"
    disk.write_bytes(bytes(DISK_SIZE))
    done = []
    for _ in range(2):
        result = run_qemu(elf, disk=disk, timeout=30, qemu=QEMU64)
        done.append(Boot(result, boot_record(disk)))
    return done


def test_first_boot_passes_every_check_and_formats_the_boot_record(boots):
    first = boots[0]

    assert first.result.stdout == expected_output(DISK_LINE % 1)
    assert first.result.guest_code == 0
    assert first.result.status == 1  # isa-debug-exit: (0 << 1) | 1
    assert first.record == record_with_count(1)


def test_second_boot_counts_2_and_otherwise_prints_the_same_bytes(boots):
    first, second = (boot.result.stdout.splitlines(keepends=True) for boot in boots)
    counter_line = len(BOOT_OUTPUT.splitlines())

    assert boots[1].result.stdout == expected_output(DISK_LINE % 2)
    assert boots[1].result.guest_code == 0
    assert boots[1].record == record_with_count(2)
    assert [first[counter_line], second[counter_line]] == [DISK_LINE % 1, DISK_LINE % 2]
    assert first[:counter_line] + first[counter_line + 1:] == (
        second[:counter_line] + second[counter_line + 1:])


def test_without_a_disk_the_count_is_1_and_not_saved():
    result = run_qemu(guest_path("minikern64"), timeout=30, qemu=QEMU64)

    assert result.stdout == expected_output(NO_DISK_LINE)
    assert result.guest_code == 0


# ---- the image: ELF64, entered in long mode, loadable by the a.out kludge


@dataclass(frozen=True)
class MultibootHeader:
    offset: int  # in the file
    flags: int
    header_addr: int
    load_addr: int
    load_end_addr: int
    bss_end_addr: int
    entry_addr: int


def multiboot_header(image: bytes) -> MultibootHeader:
    for offset in range(0, MULTIBOOT_SEARCH, 4):
        magic, flags, checksum = struct.unpack_from("<3I", image, offset)
        if magic == MULTIBOOT_MAGIC and (magic + flags + checksum) & 0xFFFFFFFF == 0:
            return MultibootHeader(offset, flags, *struct.unpack_from("<5I", image, offset + 12))
    pytest.fail("no Multiboot header in the image's first 8 KiB")


@pytest.fixture(scope="module")
def elf_image() -> tuple[bytes, ELFFile]:
    path = guest_path("minikern64")
    data = path.read_bytes()
    with path.open("rb") as stream:
        elf = ELFFile(stream)
        elf.iter_segments()  # parsed while the file is open
        yield data, elf


def symbol(elf: ELFFile, name: str) -> int:
    (found,) = elf.get_section_by_name(".symtab").get_symbol_by_name(name)
    return found["st_value"]


def section_at(elf: ELFFile, address: int) -> str:
    for section in elf.iter_sections():
        start = section["sh_addr"]
        if section["sh_flags"] & 2 and start <= address < start + section["sh_size"]:
            return section.name
    return ""


def test_image_is_elf64_linked_in_the_top_2_gib(elf_image):
    _, elf = elf_image

    assert elf.elfclass == 64 and elf["e_machine"] == "EM_X86_64"
    assert elf["e_entry"] == symbol(elf, "start64") >= KERNBASE
    assert section_at(elf, elf["e_entry"]) == ".text"
    for segment in elf.iter_segments(type="PT_LOAD"):
        low = segment["p_vaddr"] == segment["p_paddr"]  # the header and the 32-bit stub
        assert low or segment["p_vaddr"] == segment["p_paddr"] + KERNBASE


def test_elf_entry_is_64_bit_code_that_takes_its_stack(elf_image):
    data, elf = elf_image
    text = elf.get_section_by_name(".text")
    start = elf["e_entry"] - text["sh_addr"] + text["sh_offset"]
    decoder = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)

    first = next(decoder.disasm(data[start:start + 16], elf["e_entry"]))

    assert (first.mnemonic, first.op_str.split(",")[0]) == ("mov", "rsp")


def test_multiboot_header_has_the_aout_kludge_entering_the_32_bit_stub(elf_image):
    data, elf = elf_image
    header = multiboot_header(data)

    assert header.flags & AOUT_KLUDGE
    assert header.load_addr == header.header_addr == LOAD_ADDRESS
    assert header.entry_addr == symbol(elf, "start32")
    assert section_at(elf, header.entry_addr) == ".boot32"


def test_aout_kludge_copies_every_segment_where_the_elf_loads_it(elf_image):
    """QEMU copies the file from the header's offset less (header_addr - load_addr), for
    load_end_addr - load_addr bytes, and zeroes up to bss_end_addr: that must be the
    ELF's PT_LOAD segments at their physical addresses, .bss included."""
    data, elf = elf_image
    header = multiboot_header(data)
    file_start = header.offset - (header.header_addr - header.load_addr)
    memory = bytearray(data[file_start:file_start + header.load_end_addr - header.load_addr])
    memory += bytes(header.bss_end_addr - header.load_end_addr)

    segments = list(elf.iter_segments(type="PT_LOAD"))
    for segment in segments:
        at = segment["p_paddr"] - header.load_addr
        assert memory[at:at + segment["p_filesz"]] == segment.data()
        assert not any(memory[at + segment["p_filesz"]:at + segment["p_memsz"]])
    assert header.bss_end_addr == max(s["p_paddr"] + s["p_memsz"] for s in segments)
