"""The null-hypercall kernel of tinyxen.py for x86-64: the same layout, line and
shutdown, as a 64-bit Xen kernel. It is linked where a 64-bit Linux is (VIRT_BASE
0xffffffff80000000, the kernel 1 MiB above it) and calls through its hypercall page
(`call hypercall_page + 32 * nr`: the page's `syscall`, XEN-ABI64.md 1.2), so a 64-bit
PV guest's operations are priced in the hypercall their own path costs.
"""

from pvtool.abi.xen import (
    HYPERCALL_ENTRY_SIZE,
    ConsoleIO,
    Hypercall,
    SchedOp,
    ShutdownReason,
    XenVer,
)
from pvtool.bench import tinyxen
from pvtool.bench.operations import line_head
from pvtool.image.elf_format import ELF64
from pvtool.x86.isa import assemble

VIRT_BASE = 0xFFFF_FFFF_8000_0000  # Linux's __START_KERNEL_map (XEN-ABI64.md 1.8)
BASE = VIRT_BASE + tinyxen.BASE


def _at(address: int) -> int:
    """tinyxen's ADDRESS (linked at its BASE) in the 64-bit kernel."""
    return BASE + (address - tinyxen.BASE)


COUNTER, REASON, START, HEAD = (_at(a) for a in (tinyxen.COUNTER, tinyxen.REASON,
                                                 tinyxen.START, tinyxen.HEAD))
DIGITS_END = _at(tinyxen.DIGITS_END)


def _call(number: int) -> str:
    return f"call {_at(tinyxen.HYPERCALL_PAGE) + HYPERCALL_ENTRY_SIZE * number:#x}"


# Arguments in RDI, RSI, RDX; the page's entries keep every register but RAX.
TIMED_CALLS = f"""
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov qword ptr [{START:#x}], rax
    mov dword ptr [{COUNTER:#x}], {{calls}}
again:
    mov edi, {XenVer.version}
    xor esi, esi
    {_call(Hypercall.xen_version)}
    dec dword ptr [{COUNTER:#x}]
    jnz again
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, qword ptr [{START:#x}]
"""

# RAX in decimal, ending at DIGITS_END; RBX is its first digit.
DECIMAL = f"""
    mov rbx, {DIGITS_END:#x}
    mov ecx, 10
digit:
    xor edx, edx
    div rcx
    add dl, 0x30
    dec rbx
    mov byte ptr [rbx], dl
    test rax, rax
    jnz digit
"""

REPORT = f"""
    mov edi, {ConsoleIO.write}
    mov esi, {{head_size}}
    mov rdx, {HEAD:#x}
    {_call(Hypercall.console_io)}
    mov edi, {ConsoleIO.write}
    mov rsi, {DIGITS_END + 1:#x}
    sub rsi, rbx
    mov rdx, rbx
    {_call(Hypercall.console_io)}
    mov dword ptr [{REASON:#x}], {ShutdownReason.poweroff}
    mov edi, {SchedOp.shutdown}
    mov rsi, {REASON:#x}
    {_call(Hypercall.sched_op)}
hang:
    jmp hang
"""


def null_hypercall_kernel(calls: int) -> bytes:
    """The ELF64 image of a kernel making CALLS xen_version hypercalls, then powering
    off."""
    tinyxen.check_calls(calls)
    head = line_head(tinyxen.OPERATION, calls)
    text = TIMED_CALLS.format(calls=calls) + DECIMAL + REPORT.format(head_size=len(head))
    return tinyxen.kernel_image(ELF64, BASE, VIRT_BASE, assemble(text, BASE, 64), head,
                                pae_mode=b"yes")
