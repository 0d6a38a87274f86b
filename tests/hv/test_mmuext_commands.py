"""mmuext_op's dispatch by command (hv/hypercalls/mmu.py, _one_mmuext: a context
switch's and an invlpg's commands first, compared as plain ints): a command a domain
does not have is -ENOSYS on the one-entry path as in a batch, with nothing changed.
Calls go straight into the dispatcher on an idle domain (test_mmu_fast_paths.py)."""

import pytest

from pvtool.machine.cpu import CR3
from tests.hv.test_mmu import (
    SCRATCH,  # noqa: F401 (the idle guest's .bss: conftest's idle_guest reads it)
    frame,
    frame_table_state,
    mmuext,
)
from tests.hv.test_mmu_fast_paths import switch, two_bases
from tests.hv.xenguest import ENOSYS, neg
from tests.hv.xenguest64 import NEW_USER_BASEPTR


@pytest.mark.parametrize("done", [False, True], ids=["fast", "batch"])
@pytest.mark.parametrize("cmd", [NEW_USER_BASEPTR, 99], ids=["user-base", "unknown"])
def test_a_command_a_32_bit_domain_lacks_is_enosys_on_either_path(idle, cmd, done):
    """MMUEXT_NEW_USER_BASEPTR is a 64-bit guest's (xen/arch/x86/mm.c): a 32-bit
    domain gets -ENOSYS, with a validated directory as its frame, and nothing is
    counted or loaded; so does a command Xen does not have."""
    a, _ = two_bases(idle)
    assert switch(idle, a) == 0
    before, cr3 = frame_table_state(idle), idle.cpu.read(CR3)
    assert mmuext(idle, (cmd, a), done=frame(idle, 7) if done else None) == neg(ENOSYS)
    assert frame_table_state(idle) == before
    assert idle.cpu.read(CR3) == cr3
    assert idle.domain.pagetables.user_base_mfn == 0
    if done:
        assert idle.u32(frame(idle, 7)) == 0
