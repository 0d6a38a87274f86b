"""machine/firmware: the tables as a kernel finds and checks them (ACPI 6.5 5.2,
MP 1.4 chapter 4, SMBIOS 2.8), and their agreement with the devices they describe."""

import struct

import pytest

from pvtool.machine.firmware.tables import write_tables
from pvtool.machine.pc import Machine

MIB = 1 << 20


@pytest.fixture(scope="module", params=[64 * MIB, 512 * MIB])
def machine(request):
    machine = Machine(output=lambda data: None, ram_size=request.param)
    write_tables(machine.memory, machine.ram_size, machine.pci.functions.values(),
                 machine.cpu_model)
    return machine


def read(machine, address, size):
    return machine.memory.read_phys(address, size)


def u32(machine, address):
    return struct.unpack("<I", read(machine, address, 4))[0]


def scan(machine, signature, start=0xE0000, end=0x100000):
    """Where a kernel finds a signature: a 16-byte boundary in the BIOS area."""
    area = read(machine, start, end - start)
    found = [a for a in range(0, len(area), 16) if area[a:a + len(signature)] == signature]
    assert len(found) == 1, signature
    return start + found[0]


def sums_to_zero(data):
    return sum(data) & 0xFF == 0


def acpi_tables(machine):
    rsdp = scan(machine, b"RSD PTR ")
    assert sums_to_zero(read(machine, rsdp, 20))
    rsdt = u32(machine, rsdp + 16)
    length = u32(machine, rsdt + 4)
    entries = struct.unpack(f"<{(length - 36) // 4}I", read(machine, rsdt + 36, length - 36))
    return {read(machine, a, 4): a for a in (rsdt, *entries)}


def table(machine, address):
    return read(machine, address, u32(machine, address + 4))


def test_the_rsdt_lists_qemus_tables_and_every_checksum_holds(machine):
    tables = acpi_tables(machine)
    assert set(tables) == {b"RSDT", b"FACP", b"APIC", b"HPET", b"WAET"}
    fadt = table(machine, tables[b"FACP"])
    dsdt = u32(machine, tables[b"FACP"] + 40)
    for address in (*tables.values(), dsdt):
        assert sums_to_zero(table(machine, address))
    assert len(fadt) == 116  # ACPI 1.0's FADT
    assert read(machine, u32(machine, tables[b"FACP"] + 36), 4) == b"FACS"


def test_the_tables_sit_in_the_last_128_kib_of_ram(machine):
    for address in acpi_tables(machine).values():
        assert machine.ram_size - 0x20000 <= address < machine.ram_size


def test_the_fadt_points_at_the_pm_block_that_answers(machine):
    fadt = acpi_tables(machine)[b"FACP"]
    timer = u32(machine, fadt + 76)
    start = machine.ports.read(timer, 4)
    machine.advance(1_000_000)
    assert machine.ports.read(timer, 4) != start
    smi_cmd, enable = u32(machine, fadt + 48), read(machine, fadt + 52, 1)[0]
    machine.ports.write(smi_cmd, 1, enable)
    assert machine.ports.read(u32(machine, fadt + 64), 2) & 1  # SCI_EN


def test_the_madt_entries_fill_the_table_exactly(machine):
    madt = table(machine, acpi_tables(machine)[b"APIC"])
    kinds, offset = [], 44
    while offset < len(madt):
        kinds.append(madt[offset])
        offset += madt[offset + 1]
    assert offset == len(madt)
    assert kinds == [0, 1, 2, 2, 2, 2, 2, 4]  # CPU, I/O APIC, 5 overrides, NMI


def pkg_length(data, at):
    """(length, bytes it takes), decoded as ACPI 6.5 20.2.4 says."""
    follow = data[at] >> 6
    if not follow:
        return data[at] & 0x3F, 1
    value = data[at] & 0xF
    for i in range(follow):
        value |= data[at + 1 + i] << (4 + 8 * i)
    return value, follow + 1


def test_the_dsdt_aml_is_whole_objects_and_holds_s5(machine):
    fadt = acpi_tables(machine)[b"FACP"]
    aml = table(machine, u32(machine, fadt + 40))[36:]
    at = 0
    while at < len(aml):
        if aml[at] == 0x10:  # ScopeOp PkgLength
            length, _ = pkg_length(aml, at + 1)
            at += 1 + length
        else:  # NameOp, a root name, BufferOp PkgLength: the padding
            assert aml[at:at + 7] == b"\x08\\PADB\x11"
            length, _ = pkg_length(aml, at + 7)
            at += 7 + length
    assert at == len(aml)
    s5 = aml.index(b"_S5_")
    assert aml[s5 + 4:s5 + 7] == b"\x12\x06\x04"  # Package of 4 elements


def test_the_mp_tables_check_and_name_the_interrupting_pci_function(machine):
    floating = scan(machine, b"_MP_", 0xF0000)
    assert sums_to_zero(read(machine, floating, 16))
    config = u32(machine, floating + 4)
    length, count = struct.unpack("<H", read(machine, config + 4, 2))[0], \
        struct.unpack("<H", read(machine, config + 34, 2))[0]
    data = read(machine, config, length)
    assert sums_to_zero(data)
    entries, offset = [], 44
    for _ in range(count):
        entries.append(data[offset:offset + (20 if data[offset] == 0 else 8)])
        offset += len(entries[-1])
    assert offset == length
    pci = [e for e in entries if e[0] == 3 and e[4] == 0]
    pm = machine.pci.functions[(1, 3)]
    line, pin = pm.read(0x3C, 1), pm.read(0x3D, 1)
    assert [(e[5], e[7]) for e in pci] == [(1 << 2 | (pin - 1), line)]


def test_the_smbios_entry_point_checks_and_counts_its_structures(machine):
    entry = scan(machine, b"_SM_", 0xF0000)
    head = read(machine, entry, 31)
    assert sums_to_zero(head) and sums_to_zero(head[16:31])
    length, address, count = struct.unpack("<HIH", head[22:30])
    data, offset, seen, largest = read(machine, address, length), 0, [], 0
    while offset < length:
        start = offset
        seen.append(data[offset])
        offset = data.index(b"\0\0", offset + data[offset + 1]) + 2
        largest = max(largest, offset - start)
    assert offset == length and len(seen) == count
    assert seen == [0, 1, 3, 4, 16, 17, 19, 32, 127]
    assert struct.unpack("<H", head[8:10])[0] == largest


def test_smbios_memory_structures_follow_the_ram_size(machine):
    entry = scan(machine, b"_SM_", 0xF0000)
    length, address = struct.unpack("<HI", read(machine, entry + 22, 6))
    data = read(machine, address, length)
    mapped = data.index(bytes([19, 0x1F, 0x00, 0x13]))
    start, end = struct.unpack("<II", data[mapped + 4:mapped + 12])
    assert (start, end) == (0, machine.ram_size // 1024 - 1)
