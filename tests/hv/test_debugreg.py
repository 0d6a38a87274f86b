"""set_debugreg and get_debugreg answered as Xen answers them (xen/arch/x86/pv/
misc-hypercalls.c: set_debugreg; x86emul_read_dr): values kept, reserved bits forced,
DR4/DR5 aliasing DR6/DR7 while CR4.DE is clear, -EPERM for DR7.GD and for an I/O
breakpoint without CR4.DE, -ENODEV for registers that do not exist."""

import pytest

from tests.hv.harness import hypercall
from tests.hv.xenguest import HC, neg

EPERM, ENODEV = 1, 19


@pytest.mark.parametrize("reg", [0, 1, 2, 3])
def test_a_breakpoint_address_is_kept_whatever_it_is(idle, reg):
    for address in (0x1000 * (reg + 1), 0xFC000000, 0xFFFFFFFF):
        assert hypercall(idle, HC.set_debugreg, reg, address) == 0
        assert hypercall(idle, HC.get_debugreg, reg) == address


def test_dr6_and_dr7_start_at_their_reset_values(idle):
    assert hypercall(idle, HC.get_debugreg, 6) == 0xFFFF0FF0
    assert hypercall(idle, HC.get_debugreg, 7) == 0x400


def test_dr6_reads_back_with_its_reserved_bits_forced(idle):
    assert hypercall(idle, HC.set_debugreg, 6, 0) == 0
    assert hypercall(idle, HC.get_debugreg, 6) == 0xFFFF0FF0
    assert hypercall(idle, HC.set_debugreg, 6, 0x1000 | 0x4001) == 0  # bit 12 forced to 0
    assert hypercall(idle, HC.get_debugreg, 6) == 0xFFFF4FF1


def test_dr7_keeps_enables_and_lengths_and_forces_its_reserved_bits(idle):
    assert hypercall(idle, HC.set_debugreg, 7, 0x000D0003 | 0xD800) == 0
    assert hypercall(idle, HC.get_debugreg, 7) == 0x000D0403


def test_dr7_general_detect_is_xens(idle):
    assert hypercall(idle, HC.set_debugreg, 7, 1 << 13 | 1) == neg(EPERM)
    assert hypercall(idle, HC.get_debugreg, 7) == 0x400  # unchanged


def test_an_io_breakpoint_needs_cr4_de(idle):
    assert hypercall(idle, HC.set_debugreg, 7, 0b10 << 16 | 1) == neg(EPERM)
    # The same R/W bits with no breakpoint enabled are not checked.
    assert hypercall(idle, HC.set_debugreg, 7, 0b10 << 16) == 0


def test_dr4_and_dr5_alias_dr6_and_dr7_without_cr4_de(idle):
    assert hypercall(idle, HC.set_debugreg, 5, 0x1) == 0
    assert hypercall(idle, HC.get_debugreg, 7) == 0x401
    assert hypercall(idle, HC.set_debugreg, 4, 0x2) == 0
    assert hypercall(idle, HC.get_debugreg, 6) == 0xFFFF0FF2
    assert hypercall(idle, HC.get_debugreg, 4) == 0xFFFF0FF2


@pytest.mark.parametrize("reg", [8, 15, 0xFFFFFFFF])
def test_registers_that_do_not_exist_are_enodev(idle, reg):
    assert hypercall(idle, HC.set_debugreg, reg, 0) == neg(ENODEV)
    assert hypercall(idle, HC.get_debugreg, reg) == neg(ENODEV)
