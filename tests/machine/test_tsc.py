"""`rdtsc` reads virtual time (machine/clock.py), natively and trap-and-emulated alike:
one tick per instruction, at the granularity of the run loop's slices, the same on
every run; `host_tsc` gives the host's counter back (benchmarks)."""

import pytest

from pvtool.run import SLICE_INSNS, Mode, RunOptions, run_image
from tests.guests_asm.build import BARE, GuestBuilder

LOOP_INSNS = 3_000_000
# Three reads: two back to back, one after a loop; then the isa-debug-exit.
READS = BARE + f"""
    rdtsc
    mov %eax, %esi
    mov %edx, %edi
    rdtsc
    mov %eax, %ebx
    mov ${LOOP_INSNS}, %ecx
1:  loop 1b
    rdtsc
    mov %eax, %ebp
    mov $0xf4, %dx
    mov $0, %al
    out %al, %dx
    hlt
"""


@pytest.fixture(scope="module")
def reads(tmp_path_factory):
    return GuestBuilder(tmp_path_factory.mktemp("tsc")).build(READS, runtime=False).elf


def tsc_reads(elf, mode: Mode, host_tsc: bool = False) -> tuple[int, int, int, int]:
    result = run_image(elf, RunOptions(mode=mode, host_tsc=host_tsc), lambda data: None)
    assert result.stop.code == 0, result.stop
    regs = result.registers
    return regs["esi"], regs["ebx"], regs["ebp"], regs["edi"]


@pytest.mark.parametrize("mode", [Mode.NATIVE, Mode.TRAP])
def test_rdtsc_counts_instructions_the_same_way_every_run(reads, mode):
    first, back_to_back, after_loop, high = tsc_reads(reads, mode)
    assert back_to_back == first + 1  # strictly increasing within a slice
    assert LOOP_INSNS <= after_loop - first <= LOOP_INSNS + SLICE_INSNS
    assert high == 0  # EDX: the upper half, a few ms into the run
    assert tsc_reads(reads, mode) == (first, back_to_back, after_loop, high)


def test_the_host_tsc_is_the_hosts(reads):
    """Two runs never read the same host counter; the virtual one starts near 0."""
    first_run, second_run = (tsc_reads(reads, Mode.NATIVE, host_tsc=True) for _ in range(2))
    assert first_run != second_run
    assert tsc_reads(reads, Mode.NATIVE)[0] < SLICE_INSNS
