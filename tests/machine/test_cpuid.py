"""CPUID as native mode answers it (machine/cpuid.py): QEMU 7.2's qemu32 model. The
whole table is compared with QEMU by tests/e2e/test_pcprobe.py; these check its
structure."""

from pvtool.machine.cpuid import QEMU32

cpuid = QEMU32.cpuid


def text(*registers: int) -> bytes:
    return b"".join(value.to_bytes(4, "little") for value in registers)


def test_vendor_and_maximum_leaves():
    top, ebx, ecx, edx = cpuid(0, 0)
    assert top == 4 and text(ebx, edx, ecx) == b"GenuineIntel"
    assert cpuid(0x80000000, 0)[0] == 0x80000004


def test_family_model_stepping_and_features():
    eax, ebx, ecx, edx = cpuid(1, 0)
    assert (eax >> 8 & 0xF, eax >> 4 & 0xF, eax & 0xF) == (6, 6, 3)
    assert ecx == 0x80000001 and edx == 0x0781ABFD and ebx == 0x800


def test_brand_string():
    brand = b"".join(text(*cpuid(leaf, 0)) for leaf in (0x80000002, 0x80000003, 0x80000004))
    assert brand.rstrip(b"\0") == b"QEMU Virtual CPU version 2.5+"


def test_leaves_past_the_maximum_answer_as_the_highest_basic_leaf():
    assert cpuid(5, 1) == cpuid(4, 1) == cpuid(0x80000005, 1)
    assert cpuid(4, 4) == (0, 0, 0, 0)


def test_hypervisor_leaf_is_tcgs():
    top, ebx, ecx, edx = cpuid(0x40000000, 0)
    assert top == 0x40000001 and text(ebx, ecx, edx) == b"TCGTCGTCGTCG"
