"""Reading a flat Multiboot binary (pvtool/image/flat.py), checked against the layout GNU
ld gave the same link as an ELF: where the a.out kludge puts the text and the bss, and
which files are not flat binaries at all."""

import pytest

from pvtool.errors import ImageError
from pvtool.image.flat import load_flat
from pvtool.image.multiboot import KludgeLoad
from tests.image.flats import flat_kernel, kernel_symbols


def test_the_header_loads_the_whole_file_at_load_addr_and_the_bss_after_it(tmp_path):
    kernel = flat_kernel(tmp_path)
    labels = kernel_symbols(tmp_path)
    image = load_flat(kernel)
    size = kernel.stat().st_size
    assert labels["file_start"] + size == labels["_load_end"]
    assert image.load == KludgeLoad(load_addr=labels["file_start"], file_offset=0,
                                    size=size,
                                    bss_size=labels["_bss_end"] - labels["_load_end"],
                                    entry=labels["start"])


def test_text_before_the_header_is_loaded_too(tmp_path):
    kernel = flat_kernel(tmp_path, pad=0x40, load_addr="header - 0x10")
    labels = kernel_symbols(tmp_path, pad=0x40, load_addr="header - 0x10")
    load = load_flat(kernel).load
    assert (load.load_addr, load.file_offset) == (labels["header"] - 0x10, 0x30)


def test_its_addresses_are_where_the_text_is_loaded(tmp_path):
    kernel = flat_kernel(tmp_path)
    labels = kernel_symbols(tmp_path)
    image = load_flat(kernel)
    data = kernel.read_bytes()
    assert image.executable_regions() == [(labels["file_start"], data)]
    assert image.file_offset(labels["start"]) == labels["start"] - labels["file_start"]
    assert image.file_offset(labels["_load_end"]) is None  # the bss: not in the file
    assert image.file_offset(labels["file_start"] - 1) is None
    assert image.bits == 32


def test_an_elf_or_a_file_with_no_header_is_not_a_flat_binary(tmp_path):
    kernel_symbols(tmp_path)  # writes kernel.elf
    assert load_flat(tmp_path / "kernel.elf") is None
    assert load_flat(flat_kernel(tmp_path, pad=8192)) is None


@pytest.mark.parametrize(("fields", "reason"), [
    ({"flags": 0x3}, "does not set flag 16"),
    ({"bss_end": "_load_end - 4"}, "bss_end_addr 0x"),
])
def test_a_header_that_cannot_place_the_file_is_refused(tmp_path, fields, reason):
    with pytest.raises(ImageError, match=reason) as refused:
        load_flat(flat_kernel(tmp_path, **fields))
    assert refused.value.exit_status == 65
