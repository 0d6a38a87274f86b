"""The 64-bit null-hypercall kernel (bench/tinyxen64.py): a 64-bit Xen kernel whose
xen_version calls go through its hypercall page's `syscall`, and which prints the same
nanobench line as the 32-bit one. No timing is asserted (benchmarks report)."""

import pytest

from pvtool.bench.nullcall import run_kernel, write_kernel
from pvtool.bench.operations import parse_operations
from pvtool.bench.tinyxen64 import BASE, VIRT_BASE, null_hypercall_kernel
from pvtool.image.elf import load_elf
from pvtool.image.xen_notes import parse_xen_notes
from pvtool.machine.stop import StopKind
from pvtool.run import Mode, RunOptions, run_image


def test_it_is_a_64_bit_xen_kernel_linked_where_linux_is(tmp_path):
    kernel = tmp_path / "k.elf"
    kernel.write_bytes(null_hypercall_kernel(3))
    image = load_elf(kernel)
    notes = parse_xen_notes(image)
    assert image.bits == 64 and image.entry == BASE == 0xFFFF_FFFF_8010_0000
    assert notes.virt_base == VIRT_BASE and notes.entry == BASE
    assert notes.pae_mode == "yes"
    (segment,) = [s for s in image.segments if s.filesz]
    assert segment.vaddr - segment.paddr == VIRT_BASE  # loaded at 1 MiB


def test_its_calls_go_through_the_hypercall_page_and_it_prints_its_line(tmp_path):
    output = bytearray()
    result = run_image(write_kernel(tmp_path, 7, bits=64), RunOptions(mode=Mode.PV),
                       output.extend)
    assert result.stop.kind is StopKind.SHUTDOWN and "poweroff" in result.stop.reason
    assert dict(result.hypercalls) == {"xen_version": 7, "console_io": 2, "sched_op": 1}
    (line,) = bytes(output).splitlines()
    assert line.startswith(b"nanobench: null_hypercall n=7 cycles=")
    assert parse_operations(bytes(output))["null_hypercall"].n == 7


@pytest.mark.parametrize("bits", [32, 64])
def test_each_width_prices_a_null_hypercall_in_cycles(tmp_path, bits):
    result, cycles = run_kernel(write_kernel(tmp_path, 50, bits=bits))
    assert result.hypercalls["xen_version"] == 50
    assert cycles > 0


def test_a_count_outside_its_counter_is_refused():
    with pytest.raises(ValueError, match="signed 32-bit counter"):
        null_hypercall_kernel(1 << 31)
