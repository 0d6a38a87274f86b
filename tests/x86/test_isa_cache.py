"""assemble_checked's cache and assemble_unchecked (x86/isa.py): a cached encoding is
the one the check passed, a refusal is refused again every time, and the unchecked
bytes patch/glue.py sizes its first pass with are the checked ones."""

import pytest

from pvtool.x86 import isa
from pvtool.x86.isa import AssemblyError
from tests.x86.test_catalogue import FORMS_32, FORMS_64

BASES = {32: 0xC0101000, 64: 0xFFFFFFFF80101000}
WRONG = "nop\nlgdt [0x1000]\nnop"  # keystone's lgdt [abs] carries a 0x66 prefix


def test_a_refusal_is_not_cached():
    isa.assemble_checked.cache_clear()
    for _ in range(2):
        with pytest.raises(AssemblyError, match="operand-size prefix 0x66"):
            isa.assemble_checked(WRONG, 0x1000, 32)
    assert isa.assemble_checked.cache_info().currsize == 0


def test_a_cached_encoding_is_the_checked_one():
    isa.assemble_checked.cache_clear()
    first = isa.assemble_checked("cli\nmov eax, [0xc0105000]\nsti", 0x1000, 32)
    again = isa.assemble_checked("cli\nmov eax, [0xc0105000]\nsti", 0x1000, 32)
    assert first == again == bytes.fromhex("fa a1 00 50 10 c0 fb")
    info = isa.assemble_checked.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (1, 1, isa.ASSEMBLED_CACHE)
    assert isa.assemble_checked("jmp 0x2000", 0x1000, 32) != isa.assemble_checked(
        "jmp 0x2000", 0x1800, 32)  # the address is part of the key


@pytest.mark.parametrize("mode", [32, 64])
def test_unchecked_bytes_are_the_checked_bytes_for_every_catalogue_form(mode):
    """System encodings from the table and 64-bit RIP-relative operands included."""
    forms = [text for text, _ in (FORMS_32 if mode == 32 else FORMS_64)]
    compared = 0
    for text in forms:
        source = f"nop\n{text}\nnop"
        try:
            checked = isa.assemble_checked.__wrapped__(source, BASES[mode], mode)
        except AssemblyError:
            continue
        assert isa.assemble_unchecked(source, BASES[mode], mode) == checked, text
        compared += 1
    assert compared >= len(forms) * 3 // 4


def test_unchecked_is_not_checked():
    """The sizing pass takes keystone's bytes as they are: the check is
    assemble_checked's alone."""
    assert isa.assemble_unchecked(WRONG, 0x1000, 32) == bytes.fromhex("90660f01150010000090")
