"""Every entry of SYSTEM_ENCODINGS is what GNU as produces, and what keystone does not."""

import pytest

from pvtool.x86 import isa
from pvtool.x86.isa import SYSTEM_ENCODINGS, system_encoding
from tests.x86.gas import gnu_assemble

ENTRIES = sorted(SYSTEM_ENCODINGS.items())


@pytest.mark.parametrize(("mode", "statement"), [key for key, _ in ENTRIES])
def test_entry_equals_gnu_as(mode, statement, tmp_path):
    assert (
        SYSTEM_ENCODINGS[mode, statement].hex() == gnu_assemble([statement], mode, tmp_path).hex()
    )


@pytest.mark.parametrize(("mode", "statement"), [key for key, _ in ENTRIES])
def test_entry_is_there_because_keystone_gets_it_wrong(mode, statement):
    try:
        keystone_bytes = isa.assemble(statement, 0, mode)
    except isa.AssemblyError:
        return  # keystone refuses the statement outright
    assert keystone_bytes != SYSTEM_ENCODINGS[mode, statement]


@pytest.mark.parametrize(("mode", "statement"), [key for key, _ in ENTRIES])
def test_entry_decodes_back_to_its_statement(mode, statement):
    assert isa.assemble_checked(statement, 0x1000, mode) == SYSTEM_ENCODINGS[mode, statement]


def test_lookup_normalises_spelling():
    assert system_encoding("LGDT [ eax ]", 32) == b"\x0f\x01\x10"
    assert system_encoding("lgdt [eax]", 64) is None
    assert system_encoding("mov eax, ebx", 32) is None
