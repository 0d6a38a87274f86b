"""rdtscp in a PV domain, as Xen gives it: EDX:EAX the TSC that rdtsc reads (pvtool's
virtual clock, as Xen's emulated TSC: the same count vcpu_info.time describes), and
ECX the vCPU's TSC_AUX, 0 until the kernel writes MSR 0xC0000103, which Xen's
guest_wrmsr takes as any 32-bit value (#GP(0) for more) and guest_rdmsr reads back
(xen/arch/x86/msr.c); Xen loads it into the CPU when the vCPU runs
(paravirt_ctxt_switch_to). The CPUID a PV kernel is shown says RDTSCP (leaf
0x80000001, EDX bit 27).
"""

from tests.hv.harness import boot
from tests.hv.test_traps import RECORDING_BSS, RECORDING_DATA, RECORDING_HANDLERS, SETUP, records
from tests.hv.test_xen_faults import trap_run

TSC_AUX = 0xC0000103
RDTSCP_BIT = 1 << 27

READ_BOTH = r"""
    rdtsc
    mov [out], eax
    mov [out + 4], edx
    mov ecx, 0x77777777
    rdtscp
    mov [out + 8], eax
    mov [out + 12], edx
    mov [out + 16], ecx
"""


def test_rdtscp_reads_the_virtual_tsc_and_a_tsc_aux_of_0(run_guest):
    booted = trap_run(run_guest, READ_BOTH)
    tsc_lo, tsc_hi, tscp_lo, tscp_hi, aux = booted.u32s("out", 5)
    first, second = tsc_hi << 32 | tsc_lo, tscp_hi << 32 | tscp_lo
    # One clock: the harness never moves it between slices, so each read is one past
    # the one before (machine/clock.py), rdtsc's and rdtscp's alike.
    assert (first, second) == (booted.machine.clock.insns, booted.machine.clock.insns + 1)
    assert aux == 0


def test_rdtscp_is_the_same_in_every_run(build):
    guest = build(SETUP + READ_BOTH, handlers=RECORDING_HANDLERS,
                  data=RECORDING_DATA + "iopl: .long 1\nout: .fill 8, 4, 0\n",
                  bss=RECORDING_BSS)
    runs = []
    for _ in range(2):
        booted = boot(guest)
        booted.run()
        runs.append(booted.u32s("out", 5))
    assert runs[0] == runs[1]


def test_tsc_aux_written_by_wrmsr_is_what_rdtscp_and_rdmsr_return(run_guest):
    booted = trap_run(run_guest, f"""
    mov ecx, {TSC_AUX:#x}
    mov eax, 0x89abcdef
    xor edx, edx
    wrmsr
    rdtscp
    mov [out], ecx
    mov ecx, {TSC_AUX:#x}
    mov edx, 0x55555555
    rdmsr
    mov [out + 4], eax
    mov [out + 8], edx
""")
    assert booted.u32("trap_count") == 0
    assert booted.u32s("out", 3) == (0x89ABCDEF, 0x89ABCDEF, 0)
    assert booted.machine.tsc_aux == 0x89ABCDEF


def test_tsc_aux_wider_than_32_bits_is_a_gp_0(run_guest):
    booted = trap_run(run_guest, f"""
    mov dword ptr [resume], offset after
    mov ecx, {TSC_AUX:#x}
    mov eax, 5
    mov edx, 1
the_insn:
    wrmsr
after:
    rdtscp
    mov [out], ecx
""")
    (fault,) = records(booted)
    assert (fault["vector"], fault["error"], fault["eip"]) == (13, 0, booted.guest["the_insn"])
    assert booted.u32("out") == 0  # unchanged


def test_the_forced_emulation_cpuid_says_rdtscp(run_guest):
    booted = trap_run(run_guest, r"""
    mov eax, 0x80000000
    ud2
    .ascii "xen"
    cpuid
    mov [out], eax
    mov eax, 0x80000001
    ud2
    .ascii "xen"
    cpuid
    mov [out + 4], edx
""")
    highest, features = booted.u32s("out", 2)
    assert highest >= 0x80000001
    assert features & RDTSCP_BIT
    assert booted.u32("trap_count") == 0
