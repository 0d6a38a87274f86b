"""Isolation in a 64-bit domain, by guests that attack it (XEN-ABI64.md 1.1, 1.8, 2.2):
the kernel and its user programs both run at CPL 3, so what keeps them apart is the
page tables. The kernel cannot write Xen's M2P, reach Xen's private area (the GDT
and the trampoline, supervisor-only in slot 260) or write its own tables; user mode
on the user L4 cannot read the kernel's pages, though it reads the M2P.

Every attack ends the domain with a crash at the address it reached (no handler is
registered), and the test checks what the attacked memory still holds.
"""

import struct

import pytest

from pvtool.machine.cpu import CR3, RIP
from pvtool.machine.stop import StopKind
from tests.hv.harness import boot, hypercall
from tests.hv.xenguest import HC
from tests.hv.xenguest64 import (
    ADDRESS,
    DOMID_SELF,
    EINVAL,
    M2P_START,
    NEW_USER_BASEPTR,
    PAGE,
    PERDOMAIN_START,
    RAM,
    RW,
    US,
    UVMF_INVLPG,
    VIRT_BASE,
    A,
    D,
    P,
    machine_address,
    neg,
    read_u64,
    u64s,
)

USER_CODE, USER_DATA = 0x400000, 0x401000  # what the user L4 maps, and nothing else
TRAMPOLINE = PERDOMAIN_START + 0x11000  # the private area's layout: GDT, then +0x11000


def crash_address(booted) -> int:
    stop = booted.run()
    assert stop.kind is StopKind.CRASH, stop
    return stop.fault_address


# -- the kernel against Xen's slots and its own tables -----------------------------------
def test_the_kernel_cannot_write_the_m2p(build64):
    booted = boot(build64(f"""
    mov rbx, {M2P_START:#x}
    mov qword ptr [rbx + 8 * 3], 0x666
"""), ram=RAM)
    entry = machine_address(booted, M2P_START + 8 * 3)
    assert crash_address(booted) == M2P_START + 8 * 3
    assert read_u64(booted, entry) == 3


def test_the_kernel_cannot_write_xens_gdt(build64):
    booted = boot(build64(f"""
    mov rbx, {PERDOMAIN_START:#x}
    mov qword ptr [rbx + 0xe030], 0
"""), ram=RAM)
    descriptor = machine_address(booted, PERDOMAIN_START + 0xE030)
    before = read_u64(booted, descriptor)
    assert crash_address(booted) == PERDOMAIN_START + 0xE030
    assert read_u64(booted, descriptor) == before != 0


def test_the_kernel_cannot_run_the_hypervisors_trampoline(build64):
    booted = boot(build64(f"""
    mov rax, {TRAMPOLINE:#x} + 0x10
    jmp rax
"""), ram=RAM)
    assert crash_address(booted) == TRAMPOLINE + 0x10
    assert booted.cpu.cpl == 3


def test_the_kernel_cannot_write_its_own_l4_into_xens_slot(build64):
    """Its tables are mapped read-only; Xen emulates writes into L1s only (ptwr), so a
    store into the L4 faults."""
    booted = boot(build64("""
    mov rbx, [rip + start_info_ptr]
    mov rbx, [rbx + SI_pt_base]
    mov rax, 0x1067
    mov qword ptr [rbx + 8 * 260], rax
"""), ram=RAM)
    l4 = booted.cpu.read(CR3) & ADDRESS
    before = u64s(booted.memory.read_phys(l4, PAGE))
    assert crash_address(booted) == l4 + VIRT_BASE + 8 * 260
    assert u64s(booted.memory.read_phys(l4, PAGE)) == before


# -- user mode on the user L4 --------------------------------------------------------------
# The kernel reads its secret, then spins: the test takes over from there (a shutdown
# in the same slice would end the run before the user half starts).
USER_GUEST = """
    mov rax, [rip + secret]
    mov [rip + kernel_saw], rax
kernel_spins:
    jmp kernel_spins
"""
USER_CODE_PAGE = f"""
    .balign 4096
user_code:
    mov rbx, {USER_DATA:#x}
    mov rax, {M2P_START:#x}
    mov rax, [rax + 8 * 5]
    mov [rbx], rax
    mov rcx, offset secret
    mov rax, [rcx]
    mov [rbx + 8], rax
user_spin:
    jmp user_spin
    .balign 4096
"""
USER_DATA_PAGES = """
kernel_saw: .quad 0
args: .skip 64
    .balign 4096
user_data: .skip 4096
secret: .quad 0x5ec2e7
"""
USER_TABLES = "user_tables: .skip 4096 * 4"


@pytest.fixture(scope="module")
def user_guest(build64):
    return build64(USER_GUEST, handlers=USER_CODE_PAGE, data=USER_DATA_PAGES,
                   bss=USER_TABLES)


def give_user_tables(booted, data_frame: int | None = None) -> int:
    """Build a user L4 in the guest's scratch frames that maps USER_CODE and, writable,
    USER_DATA (or DATA_FRAME) and nothing of the kernel; map the frames read-only and
    hand the L4 to MMUEXT_NEW_USER_BASEPTR, as a 64-bit kernel does. Its result."""
    first = booted.addr("user_tables")
    l4, l3, l2, l1 = (first + i * PAGE for i in range(4))
    data = booted.addr("user_data") if data_frame is None else data_frame
    tables = {l4: {0: l3 | P | RW | US}, l3: {0: l2 | P | RW | US},
              l2: {USER_CODE >> 21: l1 | P | RW | US},
              l1: {0: booted.addr("user_code") | P | US | A, 1: data | P | RW | US | A | D}}
    for frame, entries in tables.items():
        table = [entries.get(i, 0) for i in range(512)]
        booted.memory.write_phys(frame, struct.pack("<512Q", *table))
        assert hypercall(booted, HC.update_va_mapping, frame + VIRT_BASE, frame | P | A,
                         UVMF_INVLPG) == 0
    booted.write("args", struct.pack("<IIQQ", NEW_USER_BASEPTR, 0, l4 // PAGE, 0))
    return hypercall(booted, HC.mmuext_op, booted.guest["args"], 1, 0, DOMID_SELF)


def test_user_mode_on_the_user_l4_reads_the_m2p_but_not_the_kernels_pages(user_guest):
    booted = boot(user_guest, ram=RAM)
    booted.run_until("kernel_saw", 0x5EC2E7)  # the kernel reads it on its own L4
    assert give_user_tables(booted) == 0
    booted.domain.pagetables.load_cr3(user=True)  # what the kernel/user toggle does
    booted.cpu.write(RIP, USER_CODE)
    assert crash_address(booted) == user_guest["secret"]
    assert booted.cpu.cpl == 3
    assert u64s(booted.memory.read_phys(booted.addr("user_data"), 16)) == (5, 0)


def test_a_user_l4_mapping_a_kernel_table_writable_is_refused(user_guest):
    booted = boot(user_guest, ram=RAM)
    kernel_l4 = booted.cpu.read(CR3) & ADDRESS
    assert give_user_tables(booted, data_frame=kernel_l4) == neg(EINVAL)
    assert booted.domain.pagetables.user_base_mfn == 0
    assert booted.domain.pagetables.typed[kernel_l4 // PAGE] == 4
