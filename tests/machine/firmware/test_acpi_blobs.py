"""machine/firmware/acpi_blobs.py: QEMU's ACPI files for fw_cfg. Run as SeaBIOS runs
the table-loader script (QEMU's hw/acpi/bios-linker-loader.c), they become the very
tables pvtool installs in memory, pointers and checksums included."""

import struct

from pvtool.machine.firmware.acpi import rsdp, tables_block
from pvtool.machine.firmware.acpi_blobs import acpi_files
from pvtool.machine.firmware.layout import high_zone

TABLES_AT, RSDP_AT = high_zone(128 << 20), 0xF59D0


def run_loader(files: dict[str, bytes], places: dict[str, int]) -> dict[str, bytearray]:
    """The script's commands applied to copies of the files placed at PLACES."""
    out = {name: bytearray(data) for name, data in files.items()}
    script = files["etc/table-loader"]
    for at in range(0, len(script), 128):
        kind = struct.unpack_from("<I", script, at)[0]
        name = script[at + 4:at + 60].rstrip(b"\0").decode()
        if kind == 1:
            align, zone = struct.unpack_from("<IB", script, at + 60)
            assert places[name] % align == 0 and zone == (2 if name.endswith("rsdp") else 1)
        elif kind == 2:
            target = script[at + 60:at + 116].rstrip(b"\0").decode()
            offset, size = struct.unpack_from("<IB", script, at + 116)
            value = struct.unpack_from("<I", out[name], offset)[0] + places[target]
            struct.pack_into("<I", out[name], offset, value)
            assert size == 4
        elif kind == 3:
            offset, start, length = struct.unpack_from("<III", script, at + 60)
            assert out[name][offset] == 0
            out[name][offset] = -sum(out[name][start:start + length]) & 0xFF
        else:
            assert kind == 0 and not any(script[at:])  # only padding after the last
    return out


def test_the_loader_script_turns_the_files_into_the_installed_tables():
    files = acpi_files()
    placed = run_loader(files, {"etc/acpi/tables": TABLES_AT, "etc/acpi/rsdp": RSDP_AT})
    block, rsdt_address = tables_block(TABLES_AT)
    assert bytes(placed["etc/acpi/tables"][:len(block)]) == block
    assert bytes(placed["etc/acpi/rsdp"]) == rsdp(rsdt_address)


def test_the_files_have_qemus_sizes_and_unfixed_fields():
    files = acpi_files()
    assert {name: len(data) for name, data in files.items()} == {
        "etc/acpi/rsdp": 20, "etc/acpi/tables": 0x20000, "etc/table-loader": 0x1000}
    # measured on QEMU 7.2 with guests/probecfg: the RSDT at offset 0x1ad8, no checksum
    assert files["etc/acpi/rsdp"] == bytes.fromhex("525344205054522000424f4348532000d81a0000")
