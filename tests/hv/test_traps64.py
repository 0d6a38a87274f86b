"""The 64-bit trap-table and callback hypercalls, called as the dispatcher calls them,
with Xen's answers (XEN-ABI64.md §1.5; xen/arch/x86/pv/callback.c)."""

import struct

import pytest

from pvtool.abi.xen import CallbackType, Errno
from pvtool.hv.errors import HypercallError
from pvtool.hv.hypercalls import TABLE_64, call
from pvtool.hv.hypercalls.traps64 import callback_op, set_callbacks, set_trap_table, stack_switch
from pvtool.hv.vcpu64 import Callback64, TrapInfo64
from tests.hv.longmode import LongModeDomain

BUFFER = 0x150000  # in the user region both L4s map
NON_CANONICAL = 0x0000_8000_0000_0000


@pytest.fixture
def dom() -> LongModeDomain:
    return LongModeDomain()


def trap_info(vector: int, flags: int, address: int) -> bytes:
    return struct.pack("<BBH4xQ", vector, flags, 0xE033, address)


def test_set_trap_table_reads_16_byte_entries_until_address_0(dom):
    dom.memory.write_phys(BUFFER, trap_info(14, 4, 0x201000) + trap_info(0x80, 3, 0x202000)
                          + trap_info(1, 0, 0))
    assert set_trap_table(dom, dom.vcpu, (BUFFER,)) == 0
    assert dom.vcpu.long_mode.trap_table == {
        14: TrapInfo64(14, 0, True, 0x201000), 0x80: TrapInfo64(0x80, 3, False, 0x202000)}


def test_set_trap_table_refuses_a_non_canonical_handler_after_the_ones_before(dom):
    dom.memory.write_phys(BUFFER, trap_info(3, 3, 0x201000) + trap_info(6, 0, NON_CANONICAL))
    with pytest.raises(HypercallError) as refused:
        set_trap_table(dom, dom.vcpu, (BUFFER,))
    assert refused.value.errno == Errno.EINVAL
    assert list(dom.vcpu.long_mode.trap_table) == [3]


def test_set_trap_table_with_a_null_handle_clears_it(dom):
    dom.vcpu.long_mode.trap_table[3] = TrapInfo64(3, 3, False, 0x201000)
    assert set_trap_table(dom, dom.vcpu, (0,)) == 0
    assert dom.vcpu.long_mode.trap_table == {}


def test_set_trap_table_from_an_unmapped_buffer_is_efault(dom):
    assert call(dom, dom.vcpu, 0, (0x900000,), TABLE_64) == -Errno.EFAULT


def callback_register(kind: int, flags: int, address: int) -> bytes:
    return struct.pack("<HH4xQ", kind, flags, address)


@pytest.mark.parametrize("kind", list(CallbackType))
def test_callback_op_registers_every_64_bit_type_with_its_mask_flag(dom, kind):
    dom.memory.write_phys(BUFFER, callback_register(kind, 1, 0x203000))
    assert callback_op(dom, dom.vcpu, (0, BUFFER)) == 0
    assert dom.vcpu.long_mode.callbacks[kind] == Callback64(0x203000, True)


@pytest.mark.parametrize("cmd, data, errno", [
    (0, callback_register(3, 0, 0x203000), Errno.ENOSYS),  # no type 3
    (0, callback_register(0, 0, NON_CANONICAL), Errno.EINVAL),
    (1, struct.pack("<H", CallbackType.event), Errno.EINVAL),  # only nmi unregisters
    (2, b"", Errno.ENOSYS),
])
def test_callback_op_refusals(dom, cmd, data, errno):
    dom.memory.write_phys(BUFFER, data.ljust(16, b"\0"))
    assert call(dom, dom.vcpu, 30, (cmd, BUFFER), TABLE_64) == -errno


def test_callback_op_unregisters_the_nmi_callback(dom):
    dom.vcpu.long_mode.callbacks[CallbackType.nmi] = Callback64(0x203000, False)
    dom.memory.write_phys(BUFFER, struct.pack("<H", CallbackType.nmi))
    assert callback_op(dom, dom.vcpu, (1, BUFFER)) == 0
    assert CallbackType.nmi not in dom.vcpu.long_mode.callbacks


def test_set_callbacks_registers_three_without_flags_and_skips_non_canonical(dom):
    assert set_callbacks(dom, dom.vcpu, (0x201000, NON_CANONICAL, 0x203000)) == 0
    assert dom.vcpu.long_mode.callbacks == {
        CallbackType.event: Callback64(0x201000, False),
        CallbackType.syscall: Callback64(0x203000, False)}


def test_stack_switch_sets_kernel_sp(dom):
    assert stack_switch(dom, dom.vcpu, (0xE02B, 0x3F0000)) == 0
    assert dom.vcpu.long_mode.kernel_sp == 0x3F0000
