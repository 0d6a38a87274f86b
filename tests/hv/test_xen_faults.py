"""What Xen answers a PV kernel's privileged instructions with, down to the exception
and its error code: cli/sti and the virtual IOPL (xen/arch/x86/pv/emul-priv-op.c,
validate() and iopl_ok()), rdmsr/wrmsr (xen/arch/x86/msr.c and emul-priv-op.c's
read_msr/write_msr), and the forced-emulation prefix from ring 3 (pv/emul-inv-op.c).
MSR numbers and values are typed from the SDM and Xen's sources, not imported.
"""

import struct

import pytest

from tests.hv.harness import boot, hypercall
from tests.hv.test_traps import (
    RECORDING_BSS,
    RECORDING_DATA,
    RECORDING_HANDLERS,
    SETUP,
    records,
    user_run,
)

MISC_ENABLE_VALUE = 1 << 11 | 1 << 12 | 1 << 23
XEN_MSR_PAT = 0x050100070406
APIC_BASE_BSP = 0xFEE00000 | 1 << 11 | 1 << 8


def trap_run(run_guest, text: str, data: str = ""):
    return run_guest(SETUP + text, handlers=RECORDING_HANDLERS,
                     data=RECORDING_DATA + "iopl: .long 1\nout: .fill 8, 4, 0xeeeeeeee\n" + data,
                     bss=RECORDING_BSS)


SET_IOPL = r"""
    mov ebx, 6      /* PHYSDEVOP_set_iopl */
    mov ecx, offset iopl
    HYPERCALL physdev_op
"""
ARCHITECTURAL_IOPL = r"""
    mov ebx, 0      /* VMASST_CMD_enable */
    mov ecx, 4      /* VMASST_TYPE_architectural_iopl */
    HYPERCALL vm_assist
"""


@pytest.mark.parametrize("insn", ["cli", "sti"])
def test_cli_and_sti_at_virtual_iopl_0_are_a_gp_0_at_the_instruction(run_guest, insn):
    booted = trap_run(run_guest, f"""
    mov dword ptr [resume], offset after
the_insn:
    {insn}
after:
""")
    (fault,) = records(booted)
    assert (fault["vector"], fault["error"], fault["eip"]) == (13, 0, booted.guest["the_insn"])


@pytest.mark.parametrize("privilege", [SET_IOPL, ARCHITECTURAL_IOPL], ids=["iopl-1",
                                                                          "architectural"])
def test_with_io_privilege_cli_and_sti_pass_and_leave_the_mask_alone(run_guest, privilege):
    booted = trap_run(run_guest, privilege + r"""
    mov byte ptr [shared_page + VCPU_upcall_mask], 0
    cli
    movzx eax, byte ptr [shared_page + VCPU_upcall_mask]
    mov [out], eax
    mov byte ptr [shared_page + VCPU_upcall_mask], 1
    sti
    movzx eax, byte ptr [shared_page + VCPU_upcall_mask]
    mov [out + 4], eax
""")
    assert booted.u32("trap_count") == 0
    assert booted.u32s("out", 2) == (0, 1)
    assert booted.machine.exits["emulated"] == 2


@pytest.mark.parametrize("msr, value", [(0x1A0, MISC_ENABLE_VALUE), (0x277, XEN_MSR_PAT),
                                        (0x1B, APIC_BASE_BSP), (0xCE, 0), (0x140, 0),
                                        (0x8B, 0), (0x17, 0), (0xC0000080, 0)],
                         ids=["misc_enable", "pat", "apic_base", "platform_info",
                              "misc_features", "ucode_rev", "platform_id", "efer"])
def test_rdmsr_of_an_msr_xen_exposes_gives_its_value(run_guest, msr, value):
    booted = trap_run(run_guest, f"""
    mov ecx, {msr}
    rdmsr
    mov [out], eax
    mov [out + 4], edx
""")
    assert booted.u32("trap_count") == 0
    assert booted.u32s("out", 2) == (value & 0xFFFFFFFF, value >> 32)


def test_rdmsr_of_the_tsc_reads_the_virtual_clock(run_guest):
    booted = trap_run(run_guest, r"""
    mov ecx, 0x10
    rdmsr
    mov [out], eax
    rdmsr
    mov [out + 4], eax
""")
    first, second = booted.u32s("out", 2)  # the virtual clock's instruction count
    assert first <= second <= booted.machine.clock.insns


@pytest.mark.parametrize("msr", [0x174, 0x176, 0x1D9, 0xC0000081, 0x40000000, 0x40000100])
def test_rdmsr_of_anything_else_is_a_gp_0_and_leaves_edx(run_guest, msr):
    booted = trap_run(run_guest, f"""
    mov dword ptr [resume], offset after
    mov ecx, {msr}
    mov eax, 0x11111111
    mov edx, 0x22222222
the_insn:
    rdmsr
after:
    mov [out], eax
    mov [out + 4], edx
""")
    (fault,) = records(booted)
    assert (fault["vector"], fault["error"], fault["eip"]) == (13, 0, booted.guest["the_insn"])
    assert booted.u32s("out", 2)[1] == 0x22222222  # (the handler's iret uses EAX)


def test_without_a_gp_handler_rdmsr_outside_xens_range_reads_0(run_guest):
    """read_msr's "faking RDMSR": a kernel that has not set a #GP handler yet."""
    booted = run_guest(r"""
    mov ecx, 0x174
    mov eax, 0x11111111
    mov edx, 0x22222222
    rdmsr
    mov [out], eax
    mov [out + 4], edx
""", data="out: .long 7, 7")
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32s("out", 2) == (0, 0)


@pytest.mark.parametrize("msr, eax, faults", [
    (0xC0000080, 0, False), (0xC0000080, 1, True),  # EFER: only its own value back
    (0x8B, 0, False), (0x8B, 1, True),  # UCODE_REV: Intel's write of 0
    (0x140, 0, False), (0x140, 1, True),  # no CPUID faulting to enable
    (0x1A0, 0, False),  # MISC_ENABLE: another value is ignored, not refused
    (0x19A, 5, False), (0x1B0, 5, False),  # THERM_CONTROL, ENERGY_PERF_BIAS: ignored
    (0x174, 0x10, True), (0x277, 0, True), (0x10, 0, True), (0x1B, 0, True),
])
def test_wrmsr_is_taken_or_a_gp_0_as_xen_decides(run_guest, msr, eax, faults):
    booted = trap_run(run_guest, f"""
    mov dword ptr [resume], offset after
    mov ecx, {msr}
    mov eax, {eax}
    xor edx, edx
the_insn:
    wrmsr
after:
    mov ecx, 0x1a0
    rdmsr
    mov [out], eax
""")
    found = [(r["vector"], r["error"], r["eip"]) for r in records(booted)]
    assert found == ([(13, 0, booted.guest["the_insn"])] if faults else [])
    assert booted.u32("out") == MISC_ENABLE_VALUE  # MISC_ENABLE unchanged by any write


def test_the_hypercall_page_msr_writes_a_page_the_kernel_then_calls(run_guest):
    booted = trap_run(run_guest, r"""
    mov ecx, 0x40000000
    mov eax, offset my_hypercall_page
    xor edx, edx
    wrmsr
    xor ebx, ebx    /* XENVER_version */
    xor ecx, ecx
    call my_hypercall_page + 17 * 32
    mov [out], eax
""", data="    .balign 4096\nmy_hypercall_page: .fill 1024, 4, 0")
    assert booted.u32("trap_count") == 0
    assert booted.u32("out") == hypercall(booted, 17, 0, 0)  # XENVER_version's answer
    assert booted.u32("out") >> 16 >= 3


@pytest.mark.parametrize("value", ["offset my_page + 1", "0x7ffff000"],
                         ids=["page-index", "not-ram"])
def test_a_bad_hypercall_page_msr_write_is_a_gp_0(run_guest, value):
    booted = trap_run(run_guest, f"""
    mov dword ptr [resume], offset after
    mov ecx, 0x40000000
    mov eax, {value}
    xor edx, edx
the_insn:
    wrmsr
after:
""", data="    .balign 4096\nmy_page: .fill 1024, 4, 0x5a5a5a5a")
    (fault,) = records(booted)
    assert (fault["vector"], fault["error"], fault["eip"]) == (13, 0, booted.guest["the_insn"])
    assert booted.u32s("my_page", 4) == (0x5A5A5A5A,) * 4


def test_the_forced_emulation_prefix_works_from_ring_3(run_guest):
    booted = user_run(run_guest, r"""
    mov eax, 0x40000000
    ud2
    .ascii "xen"
    cpuid
    mov [user_stack + 8], ebx
    mov [user_stack + 12], ecx
    mov [user_stack + 16], edx
    int3
""")
    (trap,) = records(booted, 1)
    assert trap["vector"] == 3  # the int3 after it, not a #UD
    signature = struct.pack("<3I", *booted.u32s("user_stack", 5)[2:])
    assert signature == b"XenVMMXenVMM"


def test_trace_shows_emulated_instructions_and_bounced_exceptions_in_hex(build):
    guest = build(SETUP + SET_IOPL + r"""
cli_insn:
    cli
    mov dword ptr [resume], offset after
    mov ecx, 0x174
the_insn:
    rdmsr
after:
""", handlers=RECORDING_HANDLERS, bss=RECORDING_BSS,
        data=RECORDING_DATA + "iopl: .long 1\n")
    booted = boot(guest)
    lines: list[str] = []
    booted.domain.trace = lines.append
    booted.run()
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert f"emulate cli at {booted.guest['cli_insn']:#x}" in lines
    assert f"bounce #GP error 0x0 at {booted.guest['the_insn']:#x}" in lines
