"""pop ss, mov ss, sysexit and sysret (hv/emulate_segments.py) emulated at the trap
sites `pvtool patch` leaves for them, in patched Multiboot kernels run under the
hypervisor in ring 1, and on the #GP the same unpatched kernels raise under
trap-and-emulate. QEMU, running the unpatched kernels in ring 0, is the oracle where
it has the instruction.

Each kernel below is written for a bare PC; `pvtool patch` leaves its pop ss, sysexit
or sysret as a trap site (xen32's rules). It records what it sees in `records` and
prints them on COM1, one dword a line in hex, then leaves through isa-debug-exit with
0. The numbers (selectors, MSRs) are typed from the SDM and AMD's APM, not imported
from pvtool. The kernels are linked without the ELF headers in a segment, so that
pvtool's Multiboot loader takes the unpatched ones too.
"""

import pytest

from pvtool.machine.stop import StopKind
from pvtool.patch.pipeline import patch_image
from pvtool.run import Mode, RunOptions, run_image
from tests.hv.harness import boot
from tests.hv.xenguest import Guest
from tests.oracles import run_qemu
from tests.patch.tools import build_kernel, read_virtual, trap_table

LINKER_SCRIPT = """ENTRY(_start)
SECTIONS {
    . = 0x100000;
    .text : { *(.text) }
    .data : { *(.data) }
}
"""

PRINT_RECORDS = r"""
report:
    mov esi, offset records
next_record:
    cmp esi, offset records_end
    jae reported
    mov edx, [esi]
    mov ecx, 8
next_digit:
    rol edx, 4
    mov eax, edx
    and eax, 0xf
    mov al, byte ptr [hexdigits + eax]
    call putc
    dec ecx
    jnz next_digit
    mov al, 10
    call putc
    add esi, 4
    jmp next_record
reported:
    mov dx, 0xf4
    xor eax, eax
    out dx, al
stuck:
    jmp stuck

putc:
    push edx
    push eax
    mov dx, 0x3fd
wait_thr:
    in al, dx
    test al, 0x20
    jz wait_thr
    pop eax
    mov dx, 0x3f8
    out dx, al
    pop edx
    ret
"""

# A flat GDT: 0x08 kernel code and 0x10 kernel data (DPL 0), 0x18 user code and 0x20
# user data (DPL 3), 0x28 a 32-bit TSS whose base the kernel fills in, 0x30 a second
# kernel data segment, for a stack.
DATA = r"""
records: .fill {records}, 4, 0xeeeeeeee
records_end:
hexdigits: .ascii "0123456789abcdef"
.p2align 3
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00cffa000000ffff
    .quad 0x00cff2000000ffff
tss_descriptor:
    .quad 0x0000890000000067
    .quad 0x00cf92000000ffff
gdt_end:
gdt_pointer:
    .word gdt_end - gdt - 1
    .long gdt
idt_pointer:
    .word 0x81 * 8 - 1
    .long idt
.p2align 3
idt: .fill 0x81 * 8, 1, 0
tss:
    .long 0, kernel_stack_top, 0x10
    .fill 23, 4, 0
.p2align 4
kernel_stack: .fill 1024, 1, 0
kernel_stack_top:
user_stack: .fill 1024, 1, 0
user_stack_top:
.p2align 12
page_directory: .fill 1024, 4, 0
page_table: .fill 1024, 4, 0
"""

POP_SS = r"""
.globl _start
.type _start, @function
_start:
    cli
    mov esp, offset kernel_stack_top
    lgdt [gdt_pointer]
    push {selector}
site:
    pop ss
    push ss
    pop eax
    mov [records], eax          /* SS as the CPU holds it */
    mov [records + 4], esp      /* the pop took its 4 bytes */
    pushfd
    pop eax
    and eax, 0x200
    mov [records + 8], eax      /* IF: still clear */
    mov ax, ss
    mov [records + 12], eax     /* SS as the kernel reads it (mov from SS) */
    jmp report
""" + PRINT_RECORDS

# The start of a kernel that may set IF: on its own stack, both 8259s masked.
QUIET_START = r"""
.globl _start
.type _start, @function
_start:
    cli
    mov esp, offset kernel_stack_top
    mov al, 0xff                 /* both 8259s masked: no device interrupts */
    out 0x21, al
    out 0xa1, al
"""

# The TSS descriptor's base: the address of `tss`.
TSS_BASE = """
    mov eax, offset tss
    mov word ptr [tss_descriptor + 2], ax
    shr eax, 16
    mov byte ptr [tss_descriptor + 4], al
    mov byte ptr [tss_descriptor + 7], ah
"""

# Into ring 3 through a fast system-call return, back with int 0x80 (an interrupt
# gate of DPL 3 to the kernel's code, on the TSS's ESP0), whose handler records what
# ring 3 saw and the frame it arrived with.
RING3 = QUIET_START + TSS_BASE + r"""
    mov eax, offset syscall_entry
    mov word ptr [idt + 0x80 * 8], ax
    mov word ptr [idt + 0x80 * 8 + 2], 0x08
    mov byte ptr [idt + 0x80 * 8 + 5], 0xee
    shr eax, 16
    mov word ptr [idt + 0x80 * 8 + 6], ax
    lgdt [gdt_pointer]
    lidt [idt_pointer]
    mov ax, 0x28
    ltr ax
    cld
    mov edi, offset page_table   /* the first 4 MiB, user-accessible */
    mov eax, 0x7
    mov ecx, 1024
map_page:
    stosd
    add eax, 4096
    loop map_page
    mov dword ptr [page_directory], offset page_table + 0x7
    mov eax, offset page_directory
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
{enter}
user_entry:
    push cs
    pop ebx
    push ss
    pop esi
    mov edi, esp
    int 0x80
after_int:
    jmp after_int

syscall_entry:
    mov cx, 0x10            /* a kernel reloads its data segments on entry */
    mov ds, cx
    mov es, cx
    mov [records], eax           /* EAX crossed into ring 3 untouched */
    mov [records + 4], ebx       /* CS in ring 3 */
    mov [records + 8], esi       /* SS in ring 3 */
    mov [records + 12], edi      /* ESP in ring 3 */
    mov eax, [esp]
    mov [records + 16], eax      /* the frame: EIP */
    movzx eax, word ptr [esp + 4]
    mov [records + 20], eax      /* CS: the ring the int came from */
    mov eax, [esp + 8]
    and eax, 0x200
    mov [records + 24], eax      /* EFLAGS.IF in ring 3 */
    mov eax, [esp + 12]
    mov [records + 28], eax      /* ESP */
    mov eax, [esp + 16]
    mov [records + 32], eax      /* SS */
    mov [records + 36], esp      /* ESP0, from the TSS */
    jmp report
""" + PRINT_RECORDS

# SDM Vol. 2, SYSEXIT: CS = IA32_SYSENTER_CS (MSR 0x174) + 16, SS = + 24, both RPL 3,
# EIP = EDX, ESP = ECX; EFLAGS unchanged (with interrupts masked, or enabled by an sti
# just before, as Linux returns).
SYSEXIT = r"""
    mov ecx, 0x174
    mov eax, {sysenter_cs}
    xor edx, edx
    wrmsr
    mov edx, offset user_entry
    mov ecx, offset user_stack_top
    mov eax, 0x600d
    {interrupts}
site:
    sysexit
"""

# AMD APM Vol. 3, SYSRET in legacy mode: needs EFER.SCE (MSR 0xc0000080 bit 0); CS =
# STAR[63:48] (MSR 0xc0000081), SS = that + 8, both RPL 3; EIP = ECX, ESP unchanged,
# IF set.
SYSRET = r"""
    mov ecx, 0xc0000080
    mov eax, 1
    xor edx, edx
    wrmsr
    mov ecx, 0xc0000081
    xor eax, eax
    mov edx, 0x18 << 16
    wrmsr
    mov ecx, offset user_entry
    mov esp, offset user_stack_top
    mov eax, 0x600d
site:
    sysret
"""


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("stack-and-ring-kernels")


def patched_kernel(workdir, name: str, body: str, records: int):
    """The kernel as gcc and ld build it, and as `pvtool patch` rewrites it."""
    elf, symbols = build_kernel(workdir / name, body, data=DATA.format(records=records),
                                script=LINKER_SCRIPT)
    out = elf.with_suffix(".pv.elf")
    if not out.exists():
        patch_image(elf, out)
    return elf, out, symbols


def run_patched(out, symbols):
    booted = boot(Guest(out, symbols))
    booted.run()
    return booted


def printed(*values: int) -> bytes:
    return b"".join(b"%08x\n" % value for value in values)


def assert_one_trap_site(out, symbols, original: bytes) -> None:
    """The patcher left the instruction at `site` as an int3 with its bytes in the
    trap-site table (read back as tests/patch/tools.py reads it)."""
    entries = [e for e in trap_table(out) if e.address == symbols["site"]]
    assert [e.original for e in entries] == [original]
    assert read_virtual(out, symbols["site"], 1) == b"\xcc"


def test_a_pop_ss_trap_site_loads_the_kernels_selector_with_rpl_1(kernel_dir):
    """Xen's fixup_guest_stack_selector: the ring-0 selector 0x30 is loaded as 0x31
    (its descriptor, DPL 0 in the kernel's GDT, was raised to 1 by set_gdt); ESP moves
    past the popped slot and the virtual IF stays clear. QEMU prints the same but for
    the ring in SS: 0x30 there, 0x31 here. (The patched `mov ax, ss` hides the ring.)"""
    elf, out, symbols = patched_kernel(kernel_dir, "pop_ss", POP_SS.format(selector=0x30), 4)
    assert_one_trap_site(out, symbols, b"\x17")
    booted = run_patched(out, symbols)
    assert booted.machine.stop.kind is StopKind.GUEST_EXIT and booted.machine.stop.code == 0
    expected = printed(0x31, symbols["kernel_stack_top"], 0, 0x30)
    assert bytes(booted.output) == expected
    assert booted.machine.exits["trap-site"] == 1
    assert booted.domain.upcall_mask == 1  # cli's, untouched by the pop
    native = run_qemu(elf)
    assert native.guest_code == 0
    assert native.stdout == expected.replace(b"00000031", b"00000030", 1)


def test_a_pop_ss_of_a_code_segment_crashes_the_domain(kernel_dir):
    elf, out, symbols = patched_kernel(kernel_dir, "pop_cs", POP_SS.format(selector=0x08), 4)
    booted = run_patched(out, symbols)
    assert booted.machine.stop.kind is StopKind.CRASH
    assert "ss 0x9: not a kernel stack segment" in booted.machine.stop.reason
    assert booted.output == b""


def ring3_expected(symbols, *, interrupts: int) -> bytes:
    user_stack = symbols["user_stack_top"]
    return printed(0x600D, 0x1B, 0x23, user_stack, symbols["after_int"], 0x1B, interrupts,
                   user_stack, 0x23, symbols["kernel_stack_top"] - 20)


def test_a_sysexit_trap_site_enters_ring_3_as_the_cpu_would(kernel_dir):
    """CS 0x1b and SS 0x23 from IA32_SYSENTER_CS 0x08 (written with the wrmsr the
    hypervisor emulates), EIP from EDX, ESP from ECX, EAX untouched, IF (clear) kept;
    QEMU, running the unpatched kernel in ring 0, prints the same bytes."""
    body = RING3.format(enter=SYSEXIT.format(sysenter_cs=0x08, interrupts=""))
    elf, out, symbols = patched_kernel(kernel_dir, "sysexit", body, 10)
    assert_one_trap_site(out, symbols, b"\x0f\x35")
    booted = run_patched(out, symbols)
    assert booted.machine.stop.kind is StopKind.GUEST_EXIT and booted.machine.stop.code == 0
    expected = ring3_expected(symbols, interrupts=0)
    assert bytes(booted.output) == expected
    assert booted.machine.exits["trap-site"] == 1
    native = run_qemu(elf)
    assert (native.guest_code, native.stdout) == (0, expected)


def test_a_sysret_trap_site_enters_ring_3_with_interrupts_enabled(kernel_dir):
    """SYSRET as AMD CPUs have it in legacy mode (QEMU's 32-bit CPU has no SYSCALL,
    so the APM is the oracle): CS 0x1b and SS 0x23 from STAR[63:48] = 0x18, EIP from
    ECX, ESP as it was, and IF set, which under PV clears the upcall mask."""
    elf, out, symbols = patched_kernel(kernel_dir, "sysret", RING3.format(enter=SYSRET), 10)
    assert_one_trap_site(out, symbols, b"\x0f\x07")
    booted = run_patched(out, symbols)
    assert booted.machine.stop.kind is StopKind.GUEST_EXIT and booted.machine.stop.code == 0
    assert bytes(booted.output) == ring3_expected(symbols, interrupts=0x200)


@pytest.mark.parametrize("sysenter_cs, reason", [
    (0, "cannot be emulated: IA32_SYSENTER_CS is null: sysexit raises #GP(0)"),
    (0x10, "sysexit to cs 0x23, not a ring-3 code segment"),  # 0x20: user data
])
def test_a_sysexit_the_kernel_set_up_wrong_crashes_the_domain(kernel_dir, sysenter_cs, reason):
    body = RING3.format(enter=SYSEXIT.format(sysenter_cs=sysenter_cs, interrupts=""))
    elf, out, symbols = patched_kernel(kernel_dir, f"sysexit-{sysenter_cs}", body, 10)
    booted = run_patched(out, symbols)
    assert booted.machine.stop.kind is StopKind.CRASH
    assert reason in booted.machine.stop.reason
    assert booted.output == b""


# ---- the same kernels unpatched, trap-and-emulated --------------------------------------
# The trap emulator's table extends the PV one (hv/trapemulate.py), so the kernel's own
# pop ss and sysexit fault in ring 1 and are emulated by the same handlers.


def run_trapped(elf) -> tuple[object, bytes]:
    output = bytearray()
    result = run_image(elf, RunOptions(mode=Mode.TRAP, max_insns=5_000_000), output.extend)
    return result, bytes(output)


def test_trap_and_emulate_runs_the_unpatched_pop_ss_as_pv_does(kernel_dir):
    """The ring shows in SS, whether pushed or moved, as everywhere in trap-and-emulate
    (DESIGN.md: the holes stay open); otherwise QEMU's bytes."""
    elf, _, symbols = patched_kernel(kernel_dir, "pop_ss", POP_SS.format(selector=0x30), 4)
    result, output = run_trapped(elf)
    assert result.stop.kind is StopKind.GUEST_EXIT and result.stop.code == 0
    native = run_qemu(elf)
    assert output == native.stdout.replace(b"00000030", b"00000031")
    assert result.exits["emulated"] == 3  # cli, lgdt, pop ss


def test_trap_and_emulate_runs_the_unpatched_sysexit_as_qemu_does(kernel_dir):
    body = RING3.format(enter=SYSEXIT.format(sysenter_cs=0x08, interrupts="sti"))
    elf, _, symbols = patched_kernel(kernel_dir, "sysexit-sti", body, 10)
    result, output = run_trapped(elf)
    assert result.stop.kind is StopKind.GUEST_EXIT and result.stop.code == 0
    expected = ring3_expected(symbols, interrupts=0x200)
    assert output == expected
    assert run_qemu(elf).stdout == expected
    # cli, lgdt, lidt, ltr, mov cr3, mov from and to cr0, wrmsr, sti, sysexit
    assert result.exits["emulated"] == 10
