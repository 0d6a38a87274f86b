"""find_sites decodes with detail only what the text does not rule out
(catalogue.may_classify). The filter may let ordinary instructions through, never a
site: checked on every form of every class GNU as assembles and on random bytes, each
decoded by capstone with detail (classify) and in lite mode (the text alone)."""

import capstone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvtool.x86 import isa
from pvtool.x86.catalogue import classify, may_classify
from tests.x86.gas import gnu_assemble
from tests.x86.test_catalogue import FORMS_32, FORMS_64, ORDINARY_32

LITE = {32: capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32),
        64: capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)}


def missed(code: bytes, mode: int) -> list[str]:
    """Instructions of CODE that classify finds a class for and the filter drops."""
    wrong = []
    for insn in isa.decode_all(code, 0x1000, mode):
        if isinstance(insn, isa.Undecodable) or classify(insn) is None:
            continue
        _, _, mnemonic, op_str = next(LITE[mode].disasm_lite(insn.bytes, insn.address, 1))
        if not may_classify(mnemonic, op_str):
            wrong.append(f"{mnemonic} {op_str}")
    return wrong


@pytest.mark.parametrize("mode, forms", [(32, FORMS_32), (64, FORMS_64)])
def test_every_form_of_every_class_passes_the_filter(mode, forms, tmp_path):
    code = gnu_assemble([source for source, _ in forms], mode, tmp_path)
    assert missed(code, mode) == []


# First bytes of the catalogue's encodings (SDM Vol. 2 opcode map): two-byte opcodes,
# segment moves and pushes, port I/O, flags, iret, cli/sti/hlt, and the prefixes 66 and
# f3, so that random bytes hit sites often.
SITE_BYTES = [0x0F, 0x8C, 0x8E, 0x0E, 0x16, 0x17, 0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED,
              0xEE, 0xEF, 0x6C, 0x6D, 0x6E, 0x6F, 0x9C, 0x9D, 0xCF, 0xFA, 0xFB, 0xF4,
              0x66, 0xF3]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(SITE_BYTES) | st.integers(0, 255), min_size=1,
                max_size=48),
       st.sampled_from([32, 64]))
def test_no_site_in_random_bytes_is_filtered_out(code, mode):
    assert missed(bytes(code), mode) == []


def test_the_filter_rules_out_most_ordinary_instructions(tmp_path):
    code = gnu_assemble(ORDINARY_32, 32, tmp_path)
    texts = [(m, o) for _, _, m, o in LITE[32].disasm_lite(code, 0)]
    passed = [f"{m} {o}" for m, o in texts if may_classify(m, o)]
    assert len(texts) == len(ORDINARY_32)
    # the segment-register moves other than CS and SS name no register it looks for
    assert passed == [], passed
