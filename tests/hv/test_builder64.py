"""The 64-bit domain builder: Xen's boot layout for "xen-3.0-x86_64" (XEN-ABI64.md 1.8)
as a 64-bit kernel finds it at its first instruction, at CPL 3 in long mode.

Expected values come from XEN-ABI64.md, XEN-ABI.md and the test guest's own symbols;
the page tables are walked by the test itself, not by pvtool's walker.
"""

import struct

import pytest

from pvtool.machine.cpu import (
    CR0,
    CR3,
    CR4,
    CS,
    DS,
    ES,
    FS,
    GPRS64_BY_NAME,
    GS,
    RFLAGS,
    RIP,
    RSP,
    SS,
)
from tests.hv.harness import boot
from tests.hv.xenguest64 import (
    ADDRESS,
    GUEST_KERNEL,
    M2P_START,
    PERDOMAIN_START,
    RW,
    US,
    VIRT_BASE,
    XEN_SLOTS,
    A,
    D,
    G,
    P,
    u64s,
)

PAGE = 4096
RAM = 16 << 20
NR_PAGES = RAM // PAGE
START_INFO_SIZE = 1168
# start_info, 64-bit offsets (XEN-ABI.md "Structures", the bracketed ones, and xen.h).
SI_NR_PAGES, SI_SHARED_INFO, SI_FLAGS = 32, 40, 48
SI_STORE_MFN, SI_STORE_EVTCHN, SI_CONSOLE_MFN, SI_CONSOLE_EVTCHN = 56, 64, 72, 80
SI_PT_BASE, SI_NR_PT_FRAMES, SI_MFN_LIST = 88, 96, 104
SI_MOD_START, SI_MOD_LEN, SI_CMD_LINE = 112, 120, 128
EFER = 0xC0000080
EFER_SCE, EFER_LME, EFER_LMA, EFER_NXE = 1, 1 << 8, 1 << 10, 1 << 11
CR4_PAE, CR4_FSGSBASE = 1 << 5, 1 << 16

# The kernel reads what it was given, as a kernel's first lines do: start_info through
# RSI, and the machine-to-phys table Xen maps read-only in L4 slot 256.
KERNEL_TEXT = f"""
    mov rax, [rsi + SI_nr_pages]
    mov [rip + seen_nr_pages], rax
    mov rax, [rsi + SI_pt_base]
    mov [rip + seen_pt_base], rax
    mov rbx, {M2P_START:#x}
    mov rax, [rbx + 8 * 5]
    mov [rip + seen_m2p_5], rax
    mov rax, [rbx + 8 * {NR_PAGES - 1}]
    mov [rip + seen_m2p_last], rax
"""
KERNEL_DATA = """
seen_nr_pages: .quad 0
seen_pt_base: .quad 0
seen_m2p_5: .quad 0
seen_m2p_last: .quad 0
"""


def page_up(value: int) -> int:
    return -(-value // PAGE) * PAGE


def round_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def q(data: bytes, offset: int) -> int:
    return struct.unpack_from("<Q", data, offset)[0]


def table(booted, address: int) -> tuple[int, ...]:
    return u64s(booted.memory.read_phys(address & ADDRESS, PAGE))


def walk(booted, vaddr: int) -> list[int]:
    """The entries from the L4 down to the L1 that map VADDR, read from memory."""
    entries, address = [], booted.cpu.read(CR3)
    for shift in (39, 30, 21, 12):
        entry = table(booted, address)[(vaddr >> shift) & 511]
        entries.append(entry)
        address = entry
    return entries


@pytest.fixture(scope="module")
def kernel(build64):
    return build64(KERNEL_TEXT, data=KERNEL_DATA)


@pytest.fixture
def booted(kernel):
    return boot(kernel, ram=RAM, cmdline=b"console=hvc0 root=/dev/xvda1")


@pytest.fixture
def info(booted) -> bytes:
    return booted.memory.read_phys(booted.cpu.read(GPRS64_BY_NAME["rsi"]) - VIRT_BASE,
                                   START_INFO_SIZE)


def expected_layout(kernel) -> dict[str, int]:
    """Xen's allocation order after the kernel (XEN-ABI64.md 1.8)."""
    p2m = page_up(kernel["stack_top"])
    start_info = p2m + page_up(8 * NR_PAGES)
    pt_base = start_info + 3 * PAGE
    frames = 1
    while True:
        stack = pt_base + frames * PAGE
        v_end = round_up(stack + PAGE + (512 << 10), 4 << 20)
        l1s = (v_end - 1 >> 21) - (VIRT_BASE >> 21) + 1
        if 3 + l1s <= frames:
            break
        frames = 3 + l1s  # one L4, one L3, one L2: all of it is under one gigabyte
    return {"p2m": p2m, "start_info": start_info, "xenstore": start_info + PAGE,
            "console": start_info + 2 * PAGE, "pt_base": pt_base, "frames": frames,
            "stack": stack, "v_end": v_end}


# -- the first instruction --------------------------------------------------------------
def test_the_vcpu_enters_the_kernel_at_cpl_3_in_long_mode_on_xens_flat_selectors(booted, kernel):
    cpu = booted.cpu
    assert cpu.read(RIP) == kernel["_start"]
    assert cpu.cpl == 3
    assert (cpu.read(CS), cpu.read(SS)) == (0xE033, 0xE02B)
    assert [cpu.read(reg) for reg in (DS, ES, FS, GS)] == [0, 0, 0, 0]
    assert cpu.read(RFLAGS) == 0x202  # IF, and bit 1 which always reads 1


def test_rsp_is_the_top_of_the_boot_stack_and_rsi_points_at_start_info(booted, kernel):
    layout = expected_layout(kernel)
    assert booted.cpu.read(RSP) == layout["stack"] + PAGE
    assert booted.cpu.read(GPRS64_BY_NAME["rsi"]) == layout["start_info"]


def test_cr3_is_the_l4s_frame_and_paging_is_long_modes(booted, kernel):
    cpu = booted.cpu
    assert cpu.read(CR3) == expected_layout(kernel)["pt_base"] - VIRT_BASE
    assert cpu.read(CR0) & 0x80010001 == 0x80010001  # PG, WP, PE
    assert cpu.read(CR4) & CR4_PAE


def test_efer_has_long_mode_syscall_and_nx_and_fsgsbase_is_off(booted):
    efer = booted.machine.uc.msr_read(EFER)
    assert efer & (EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE) == \
        EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE
    assert not booted.cpu.read(CR4) & CR4_FSGSBASE


# -- start_info --------------------------------------------------------------------------
def test_start_info_has_the_64_bit_magic_and_layout(info, kernel):
    layout = expected_layout(kernel)
    assert info[:32] == b"xen-3.0-x86_64".ljust(32, b"\0")
    assert q(info, SI_NR_PAGES) == NR_PAGES
    assert q(info, SI_SHARED_INFO) % PAGE == 0 and q(info, SI_SHARED_INFO) >= RAM
    assert struct.unpack_from("<I", info, SI_FLAGS)[0] == 0  # a domU
    assert q(info, SI_STORE_MFN) == (layout["xenstore"] - VIRT_BASE) // PAGE
    assert q(info, SI_CONSOLE_MFN) == (layout["console"] - VIRT_BASE) // PAGE
    assert struct.unpack_from("<I", info, SI_STORE_EVTCHN)[0] != \
        struct.unpack_from("<I", info, SI_CONSOLE_EVTCHN)[0]
    assert q(info, SI_PT_BASE) == layout["pt_base"]
    assert q(info, SI_NR_PT_FRAMES) == layout["frames"]
    assert q(info, SI_MFN_LIST) == layout["p2m"]
    assert (q(info, SI_MOD_START), q(info, SI_MOD_LEN)) == (0, 0)


def test_start_info_carries_the_command_line(info):
    assert info[SI_CMD_LINE:SI_CMD_LINE + 29] == b"console=hvc0 root=/dev/xvda1\0"


def test_the_p2m_list_is_eight_bytes_a_page_and_the_identity(booted, kernel):
    p2m = expected_layout(kernel)["p2m"] - VIRT_BASE
    assert u64s(booted.memory.read_phys(p2m, 8 * NR_PAGES)) == tuple(range(NR_PAGES))


# -- the bootstrap page tables -----------------------------------------------------------
def test_the_tables_are_one_l4_one_l3_one_l2_then_the_l1s_in_that_order(booted, kernel):
    layout = expected_layout(kernel)
    pfn = (layout["pt_base"] - VIRT_BASE) // PAGE
    l4 = table(booted, pfn * PAGE)
    l3 = table(booted, l4[511])
    l2 = table(booted, l3[510])
    assert (l4[511] & ADDRESS, l3[510] & ADDRESS) == ((pfn + 1) * PAGE, (pfn + 2) * PAGE)
    l1s = [entry & ADDRESS for entry in l2 if entry & P]
    assert l1s == [(pfn + 3 + i) * PAGE for i in range(layout["frames"] - 3)]


def test_every_page_up_to_v_end_is_mapped_one_to_one_and_no_further(booted, kernel):
    layout = expected_layout(kernel)
    for vaddr in (VIRT_BASE, kernel["_start"], layout["stack"], layout["v_end"] - PAGE):
        assert walk(booted, vaddr)[3] & ADDRESS == vaddr - VIRT_BASE
    assert not walk(booted, layout["v_end"])[3] & P


def test_validation_gave_every_level_the_user_bit_and_kernel_pages_guest_kernel(booted, kernel):
    """The builder writes 0x067 above and 0x023 in the L1s; pinning the L4 adjusts
    them as Xen does (XEN-ABI64.md 1.8)."""
    l4e, l3e, l2e, l1e = walk(booted, kernel["_start"])
    for upper in (l4e, l3e, l2e):
        assert upper & 0xFFF == P | RW | US | A | D
    assert l1e & ~ADDRESS == GUEST_KERNEL | P | RW | US | A
    assert not l1e & G  # kernel pages are never global


def test_the_page_table_frames_are_mapped_read_only(booted, kernel):
    layout = expected_layout(kernel)
    for index in range(layout["frames"]):
        l1e = walk(booted, layout["pt_base"] + index * PAGE)[3]
        assert l1e & (P | RW) == P, f"table {index}"
    assert walk(booted, layout["stack"])[3] & RW


def test_xens_slots_hold_the_m2p_read_only_and_the_private_area_supervisor_only(booted):
    l4 = table(booted, booted.cpu.read(CR3))
    m2p, private = l4[256], l4[260]
    assert m2p & (P | US) == P | US
    assert private & P and not private & US
    assert [slot for slot in XEN_SLOTS if l4[slot]] == [256, 260]
    m2p_l1e = walk(booted, M2P_START)[3]
    assert m2p_l1e & (P | RW | US) == P | US


def test_the_l4_is_pinned_and_the_vcpus_kernel_base(booted, kernel):
    pagetables = booted.domain.pagetables
    l4 = (expected_layout(kernel)["pt_base"] - VIRT_BASE) // PAGE
    assert pagetables.base_mfn == l4
    assert pagetables.typed[l4] == 4
    assert booted.domain.frames.type_info(l4) & 0x10  # PGT_pinned
    assert pagetables.user_base_mfn == 0  # the user L4 starts null (xg_dom_x86.c)


def test_the_hypercall_page_holds_xens_64_bit_stubs(booted, kernel):
    page = booted.memory.read_phys(booted.addr("hypercall_page"), PAGE)
    assert page[29 * 32:29 * 32 + 14] == bytes.fromhex("5141 53b8 1d00 0000 0f05 415b 59c3")
    assert page[23 * 32:23 * 32 + 11] == bytes.fromhex("5141 5350 b817 0000 000f 05")
    assert page[29 * 32 + 14:30 * 32] == b"\xcc" * 18


# -- what the kernel sees when it runs ----------------------------------------------------
def test_the_kernel_reads_start_info_and_the_m2p_at_cpl_3(booted, kernel):
    booted.run_until("done", 1)
    seen = u64s(booted.memory.read_phys(booted.addr("seen_nr_pages"), 32))
    assert seen == (NR_PAGES, expected_layout(kernel)["pt_base"], 5, NR_PAGES - 1)
    assert booted.cpu.cpl == 3


def test_the_kernel_cannot_read_the_private_area_in_slot_260(build64):
    guest = build64(f"""
    mov rbx, {PERDOMAIN_START:#x}
    mov rax, [rbx]
""")
    booted = boot(guest, ram=RAM)
    stop = booted.run()
    assert stop.kind.value == "crash"
    assert stop.fault_address == PERDOMAIN_START
