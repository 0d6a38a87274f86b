"""What the hypervisor keeps between page-table operations, and why a guest can never
write behind it: the TLB a kernel's store into an L1 leaves for its own invlpg (as
Xen's ptwr emulation does), the flush before any frame becomes a page table, and the
translations guest memory keeps for hypercall pointers, forgotten entry by entry.

The guests run on the builder's tables, validated at boot; the L1 that maps the
scratch frames is mapped read-only at l1_va (tests/hv/test_mmu.py's PTWR prelude).
"""

from pvtool.hv.frames import PINNED, VALIDATED, PageType, page_type
from tests.hv.harness import boot
from tests.hv.test_mmu import PTWR, PTWR_DATA, PTWR_HANDLERS, SCRATCH, frame
from tests.hv.xenguest import EINVAL, neg

PAGE = 4096
INVLPG_LOCAL, PIN_L1_TABLE = 7, 0

# edi := the address of the L1 entry (at l1_va) that maps scratch frame \index.
L1_ENTRY = r"""
    .macro L1_ENTRY index
    mov eax, offset frames + \index * 4096
    shr eax, 12
    and eax, 0x3ff
    mov edi, [l1_va]
    lea edi, [edi + eax * 4]
    .endm
"""

ONE_OP = r"""
    mov ebx, offset ops
    mov ecx, 1
    xor edx, edx
    mov esi, DOMID_SELF
    HYPERCALL mmuext_op
"""


def test_a_store_into_an_l1_leaves_the_tlb_to_the_kernels_invlpg(build):
    """The kernel reads frame 0 (its translation cached), remaps it onto frame 1 with a
    plain store (validated, emulated, no flush), reads it again through the TLB as on
    the bare machine, then invlpg's it and sees frame 1."""
    booted = boot(build(L1_ENTRY + PTWR + r"""
    mov dword ptr [frames], 0xaaaa0000
    mov dword ptr [frames + 4096], 0xbbbb1111
    mov eax, [frames]
    mov [before], eax
    L1_ENTRY 0
    mov ecx, offset frames + 4096 + 0x63
    mov [edi], ecx
    mov eax, [frames]
    mov [stale], eax
    mov dword ptr [ops + 4], offset frames
""" + ONE_OP + r"""
    mov [rc], eax
    mov eax, [frames]
    mov [after], eax
""", handlers=PTWR_HANDLERS, data=PTWR_DATA + f"""
before: .long 0
stale: .long 0
after: .long 0
rc: .long 0xffffffff
ops: .long {INVLPG_LOCAL}, 0, 0
""", bss=SCRATCH))
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("faults") == 0 and booted.u32("rc") == 0
    assert booted.machine.exits["ptwr"] == 1
    assert booted.pte(frame(booted, 0)) & ~0xFFF == frame(booted, 1)
    assert booted.u32("before") == 0xAAAA0000
    assert booted.u32("stale") == 0xAAAA0000  # the TLB, as the kernel left it
    assert booted.u32("after") == 0xBBBB1111


def test_a_stale_writable_translation_never_reaches_a_page_table(build):
    """The attack the deferred flush opens, closed: the kernel writes frame 3 (its
    writable translation cached), makes the PTE read-only with a store and no invlpg,
    pins frame 3 as an L1, then stores through the translation it still expects to
    be writable an entry mapping a frame of the hypervisor's. The pin flushed the TLB,
    so the store faults into ptwr, which refuses the entry: the domain crashes and the
    pinned table holds nothing."""
    booted = boot(build(L1_ENTRY + PTWR + r"""
    mov dword ptr [frames + 3 * 4096], 0
    L1_ENTRY 3
    mov ecx, offset frames + 3 * 4096 + 0x21
    mov [edi], ecx                     /* read-only now, still writable in the TLB */
    mov dword ptr [ops + 4], offset frames + 3 * 4096
    shr dword ptr [ops + 4], 12
""" + ONE_OP + r"""
    mov [rc], eax
    mov dword ptr [frames + 3 * 4096], 0xfc400063
    mov dword ptr [reached], 1
""", handlers=PTWR_HANDLERS, data=PTWR_DATA + f"""
rc: .long 0xffffffff
ops: .long {PIN_L1_TABLE}, 0, 0
""", bss=SCRATCH))
    booted.run()
    pinned = frame(booted, 3)
    info = booted.domain.frames.type_info(pinned // PAGE)
    assert booted.u32("rc") == 0
    assert page_type(info) == PageType.L1 and info & PINNED and info & VALIDATED
    assert booted.u32("reached") == 0
    assert "writes an invalid page-table entry" in booted.machine.stop.reason
    assert booted.u32(pinned) == 0
    assert booted.machine.exits["ptwr"] == 1  # the downgrade; the refused store crashed


def test_a_hypercall_pointer_follows_a_kernels_store_into_an_l1(build):
    """Guest memory keeps the translation of a console_io buffer; the kernel remaps the
    buffer's page with a plain store, and the next console_io reads the new frame (the
    entry's translations were forgotten), the same page again after the store puts it
    back."""
    booted = boot(build(L1_ENTRY + PTWR + r"""
    mov dword ptr [frames], 0x21646c6f         /* "old!" */
    mov dword ptr [frames + 4096], 0x2177656e  /* "new!" */
    mov ebx, CONSOLEIO_write
    mov ecx, 4
    mov edx, offset frames
    HYPERCALL console_io
    L1_ENTRY 0
    mov esi, [edi]
    mov ecx, offset frames + 4096 + 0x63
    mov [edi], ecx
    mov ebx, CONSOLEIO_write
    mov ecx, 4
    mov edx, offset frames
    HYPERCALL console_io
    mov [edi], esi
    mov ebx, CONSOLEIO_write
    mov ecx, 4
    mov edx, offset frames
    HYPERCALL console_io
""", handlers=PTWR_HANDLERS, data=PTWR_DATA, bss=SCRATCH))
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert bytes(booted.output) == b"old!new!old!"
    assert booted.machine.exits["ptwr"] == 2


def test_a_switch_back_to_a_validated_base_reads_none_of_its_tables(build):
    """cr3_switch's cost: going back to a base already validated is a count increment.
    Counted here by the entries the validator reads: none, over ten switches."""
    booted = boot(build(r"""
    mov ebx, offset ops
    mov ecx, 10
    xor edx, edx
    mov esi, DOMID_SELF
    HYPERCALL mmuext_op
    mov [rc], eax
""", data="rc: .long 0xffffffff\nops: .fill 30, 4, 0", bss=SCRATCH))
    base = booted.domain.pagetables.base_mfn
    other = frame(booted, 4) // PAGE
    booted.write(other * PAGE, booted.memory.read_phys(base * PAGE, PAGE))  # the same mappings
    ops = [word for index in range(10) for word in (5, (other, base)[index % 2], 0)]
    booted.write_u32s("ops", *ops)
    reads = []
    validator = booted.domain.pagetables.validator
    entries = validator.entries
    validator.entries = lambda mfn, level: reads.append(mfn) or entries(mfn, level)
    booted.run()
    assert booted.u32("rc") == 0
    assert reads == [other]  # validated once, the first time it is used
    assert booted.domain.pagetables.base_mfn == base


def test_a_validated_table_nothing_holds_is_never_written_behind_the_validator(build):
    """The validation kept for a directory no base holds is what makes switching back a
    count increment, so nothing may change the directory unseen: the kernel leaves it,
    stores into it (an entry linking a frame of the hypervisor's as an L1), and the
    store faults, drops the kept validation and lands as plain memory; switching back
    then validates the directory whole again, and refuses it."""
    booted = boot(build(PTWR + r"""
    mov ebx, offset away
    mov ecx, 2
    xor edx, edx
    mov esi, DOMID_SELF
    HYPERCALL mmuext_op
    mov [rc_away], eax
    mov eax, [other_va]
    mov dword ptr [eax + 7 * 4], 0xfc400067
    mov ebx, offset back
    mov ecx, 1
    xor edx, edx
    mov esi, DOMID_SELF
    HYPERCALL mmuext_op
    mov [rc_back], eax
""", handlers=PTWR_HANDLERS, data=PTWR_DATA + """
rc_away: .long 0xffffffff
rc_back: .long 0xffffffff
other_va: .long 0
away: .fill 6, 4, 0
back: .fill 3, 4, 0
""", bss=SCRATCH))
    base = booted.domain.pagetables.base_mfn
    other = frame(booted, 4) // PAGE
    booted.write(other * PAGE, booted.memory.read_phys(base * PAGE, PAGE))
    booted.write_u32s("away", 5, other, 0, 5, base, 0)
    booted.write_u32s("back", 5, other, 0)
    booted.write_u32s("other_va", other * PAGE)
    reads = []
    validator = booted.domain.pagetables.validator
    entries = validator.entries
    validator.entries = lambda mfn, level: reads.append(mfn) or entries(mfn, level)
    booted.run()
    assert booted.u32("rc_away") == 0 and booted.u32("faults") == 0
    assert booted.machine.exits["ptwr"] == 1  # the store, which gave write access back
    assert booted.u32(other * PAGE + 7 * 4) == 0xFC400067  # plain memory now
    assert booted.u32("rc_back") == neg(EINVAL)
    # validated when first used, its references dropped at the store, validated again
    assert reads == [other, other, other]
    assert booted.domain.pagetables.base_mfn == base
