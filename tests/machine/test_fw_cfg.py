"""machine/fw_cfg.py: QEMU's fw_cfg device through the machine's ports and memory, with
the values guests/probecfg measured on QEMU 7.2 (docs/specs/fw_cfg.txt in QEMU)."""

import struct

import pytest

from pvtool.machine.fw_cfg import KernelFacts
from pvtool.machine.pc import Machine

SELECTOR, DATA, DMA_HIGH, DMA_LOW = 0x510, 0x511, 0x514, 0x518
DESCRIPTOR, BUFFER = 0x8000, 0x9000
READ, SKIP, SELECT, WRITE = 0x02, 0x04, 0x08, 0x10
RAM = 64 << 20


@pytest.fixture
def machine():
    return Machine(ram_size=RAM, output=lambda data: None)


def read_item(machine, key: int, length: int) -> bytes:
    machine.ports.write(SELECTOR, 2, key)
    return bytes(machine.ports.read(DATA, 1) for _ in range(length))


def dma(machine, control: int, length: int, buffer: int = BUFFER) -> tuple[int, bytes]:
    """One transfer into BUFFER (filled with 0xAA first): the status, and what the
    buffer's first bytes (at most 16) hold."""
    shown = min(length, 16)
    machine.memory.write_phys(BUFFER, b"\xaa" * shown)
    machine.memory.write_phys(DESCRIPTOR, struct.pack(">IIQ", control, length, buffer))
    machine.ports.write(DMA_HIGH, 4, 0)
    machine.ports.write(DMA_LOW, 4, int.from_bytes(DESCRIPTOR.to_bytes(4, "big"), "little"))
    status = struct.unpack(">I", machine.memory.read_phys(DESCRIPTOR, 4))[0]
    return status, machine.memory.read_phys(BUFFER, shown)


def directory(machine) -> dict[str, tuple[int, int]]:
    count = struct.unpack(">I", read_item(machine, 0x19, 4))[0]
    raw = read_item(machine, 0x19, 4 + 64 * count)[4:]
    entries = [struct.unpack(">IHH56s", raw[i:i + 64]) for i in range(0, len(raw), 64)]
    return {name.rstrip(b"\0").decode(): (size, select) for size, select, _, name in entries}


def test_the_signature_id_and_dma_register_read_as_on_qemu(machine):
    assert read_item(machine, 0x00, 6) == b"QEMU\0\0"  # zeros past the end
    assert read_item(machine, 0x01, 4) == bytes([3, 0, 0, 0])  # traditional and DMA
    assert bytes(machine.ports.read(0x514 + i, 1) for i in range(8)) == b"QEMU CFG"
    assert machine.ports.read(0x514, 4).to_bytes(4, "little") == b"QEMU"


def test_a_byte_read_of_the_selector_reads_data_and_data_writes_are_lost(machine):
    machine.ports.write(SELECTOR, 2, 0)
    first = machine.ports.read(SELECTOR, 1)
    machine.ports.write(DATA, 1, 0x55)
    assert bytes([first, machine.ports.read(DATA, 1)]) == b"QE"


def test_the_machine_items_carry_ram_and_cpus(machine):
    assert read_item(machine, 0x03, 8) == struct.pack("<Q", RAM)
    assert read_item(machine, 0x05, 2) == read_item(machine, 0x0F, 2) == b"\1\0"
    assert read_item(machine, 0x8002, 4) == b"\1\0\0\0"  # IRQ 0 is overridden
    hpet = read_item(machine, 0x8004, 16)
    assert hpet == bytes.fromhex("0101a286800000d0fe00000000000000")


@pytest.mark.parametrize("key, expected", [
    (0x0040, bytes(16)), (0x3FFF, bytes(16)), (0x8040, bytes(16)), (0xC000, bytes(16)),
    # the write-channel bit is ignored: the signature, then the CPU count, then zeros
    (0x4000, b"QEMU" + bytes(12)), (0x4005, b"\1\0" + bytes(14)),
])
def test_invalid_selectors_read_zeros_and_the_write_bit_is_ignored(machine, key, expected):
    assert read_item(machine, key, 16) == expected


def test_the_directory_lists_qemus_files_in_name_order(machine):
    files = directory(machine)
    assert list(files) == sorted(files)
    assert [select for _, select in files.values()] == list(range(0x20, 0x20 + len(files)))
    assert files["etc/e820"][0] == 20
    assert files["etc/acpi/tables"][0] == 0x20000
    assert files["etc/smbios/smbios-tables"][0] == 0x141
    e820 = read_item(machine, files["etc/e820"][1], 20)
    assert e820 == struct.pack("<QQI", 0, RAM, 1)
    assert read_item(machine, files["etc/system-states"][1], 6) == bytes.fromhex("800000818280")


def test_the_kernel_adds_its_items_the_rom_and_the_boot_order(machine):
    info = bytes(range(1, 117))
    machine.fw_cfg.load_kernel(KernelFacts(0x100000, 0x100020, b"K" * 0x3000, 0x9500, info))
    assert read_item(machine, 0x07, 4) == struct.pack("<I", 0x100000)
    assert read_item(machine, 0x08, 4) == struct.pack("<I", 0x3000)
    assert read_item(machine, 0x10, 4) == struct.pack("<I", 0x100020)
    assert read_item(machine, 0x0A, 4) == struct.pack("<I", 0x9500)
    assert read_item(machine, 0x0B, 4) == struct.pack("<I", 0x58)
    sent = read_item(machine, 0x12, 0x58)
    # mem_lower, mem_upper and mmap_length are the option ROM's to fill in
    assert sent[4:12] == bytes(8) and sent[44:48] == bytes(4)
    assert sent[:4] == info[:4] and sent[12:44] == info[12:44] and sent[48:] == info[48:0x58]
    files = directory(machine)
    assert files["genroms/multiboot_dma.bin"][0] == 0x400
    bootorder = read_item(machine, files["bootorder"][1], 31)
    assert bootorder == b"/rom@genroms/multiboot_dma.bin\0"


def test_dma_selects_skips_reads_and_refuses_writes(machine):
    e820 = directory(machine)["etc/e820"][1]
    assert dma(machine, e820 << 16 | SELECT | SKIP, 4) == (0, b"\xaa" * 4)
    assert dma(machine, READ, 8) == (0, bytes(4) + struct.pack("<Q", RAM)[:4])
    assert dma(machine, WRITE, 4) == (1, b"\xaa" * 4)  # refused, yet it moves on
    assert dma(machine, READ, 4) == (0, b"\1\0\0\0")  # the entry's type
    assert dma(machine, 0, 4) == (0, b"\xaa" * 4)  # no operation
    assert dma(machine, SELECT | READ, 8) == (0, b"QEMU\0\0\0\0")
    assert dma(machine, 0x40 << 16 | SELECT | READ, 4) == (0, bytes(4))
    assert dma(machine, 0x40 << 16 | SELECT | WRITE, 4)[0] == 1
    assert dma(machine, SELECT | READ | WRITE, 4) == (0, b"QEMU")  # read wins


def test_dma_past_ram_fails_and_huge_lengths_cost_nothing(machine):
    assert dma(machine, SELECT | READ, 8, buffer=RAM - 4)[0] == 1
    assert dma(machine, SELECT | SKIP, 0xFFFF_FFFF) == (0, b"\xaa" * 16)
    assert dma(machine, READ, 4) == (0, bytes(4))  # far past the end
    assert dma(machine, SELECT | WRITE, 0xFFFF_FFFF)[0] == 1
