"""load_elf reads the symbol table as one array (image/elf.py's _symbol_entries):
the symbols it gives are exactly those of pyelftools' per-symbol parse, which it
replaced for speed, on every guest and on symbol tables damaged in the ways the
array reader must treat as pyelftools does."""

import io
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pvtool.image.elf import load_elf
from tests.oracles import guest_path

GUESTS = ["hello", "minikern", "minikern64", "xenhello64", "nanobench64", "highhalf"]
SHT_SYMTAB = 2


def pyelftools_symbols(data: bytes) -> tuple:
    """(name, value, size, kind, binding) of each defined, named symbol, read by
    pyelftools one symbol at a time (what load_elf did before)."""
    elf = ELFFile(io.BytesIO(data))
    table = next(s for s in elf.iter_sections() if s["sh_type"] == "SHT_SYMTAB")

    def name(value, prefix):
        return value[len(prefix):].lower() if isinstance(value, str) else f"{value:#x}"

    return tuple((s.name, s["st_value"], s["st_size"], name(s["st_info"]["type"], "STT_"),
                  name(s["st_info"]["bind"], "STB_"))
                 for s in table.iter_symbols() if s.name and s["st_shndx"] != "SHN_UNDEF")


def ours(path: Path) -> tuple:
    return tuple((s.name, s.value, s.size, s.kind, s.binding) for s in load_elf(path).symbols)


def symtab_32(data: bytes) -> tuple[int, int, int]:
    """(offset, size, string table offset) of hello's .symtab."""
    (shoff,) = struct.unpack_from("<I", data, 32)
    (shnum,) = struct.unpack_from("<H", data, 48)
    for i in range(shnum):
        fields = struct.unpack_from("<10I", data, shoff + 40 * i)
        if fields[1] == SHT_SYMTAB:
            strtab = struct.unpack_from("<10I", data, shoff + 40 * fields[6])
            return fields[4], fields[5], strtab[4]
    raise AssertionError("no .symtab")


@pytest.mark.parametrize("name", GUESTS)
def test_every_guests_symbols_are_pyelftools_symbols(name):
    data = guest_path(name).read_bytes()
    symbols = ours(guest_path(name))
    assert len(symbols) > 30
    assert symbols == pyelftools_symbols(data)


def test_odd_entries_read_as_pyelftools_reads_them(tmp_path):
    """Unknown types and bindings (hex), an undefined symbol (left out), a name of
    undecodable bytes (replaced), a name offset past the file (no name: left out)."""
    data = bytearray(guest_path("hello").read_bytes())
    start, size, strings = symtab_32(data)
    entries = [start + 16 * i for i in range(5, 10)]
    data[entries[0] + 12] = 0xBB  # st_info: binding 11, type 11
    struct.pack_into("<H", data, entries[1] + 14, 0)  # st_shndx: SHN_UNDEF
    (name_at,) = struct.unpack_from("<I", data, entries[2])
    data[strings + name_at] = 0xFF  # not UTF-8
    struct.pack_into("<I", data, entries[3], len(data))  # st_name past the file
    image = tmp_path / "odd.elf"
    image.write_bytes(bytes(data))
    symbols = ours(image)
    assert symbols == pyelftools_symbols(bytes(data))
    assert ("0xb", "0xb") in {(kind, binding) for _, _, _, kind, binding in symbols}
    assert any("\ufffd" in name for name, *_ in symbols)
    assert len(symbols) == len(ours(guest_path("hello"))) - 2

