"""The limits' probes on tiny inputs: they return positive figures and their loops
really ran the iterations asked for. No timing is asserted (benchmarks report)."""

import struct

import pytest
from unicorn import x86_const as X

from pvtool.bench import emptyhook
from pvtool.bench.bare import bare_cpu, load_code, map_range
from pvtool.bench.emptyhook import run_empty_hook
from pvtool.bench.hypercallfloor import run_hypercall_floor
from pvtool.bench.nullcall import run_null_hypercalls, write_kernel
from pvtool.bench.operations import parse_operations
from pvtool.bench.rawloop import run_register_loop
from pvtool.bench.rawsieve import run_sieve
from pvtool.bench.tinyxen import BASE, DATA, DECIMAL, DELTA, DIGITS_END, null_hypercall_kernel
from pvtool.errors import UnsupportedImageError
from pvtool.image.elf import load_elf
from pvtool.image.xen_notes import parse_xen_notes
from pvtool.run import Mode, RunOptions, run_image
from pvtool.x86.isa import assemble, decode_one
from pvtool.x86.paging import PAGE_SIZE


def test_the_register_loop_runs_every_iteration():
    result = run_register_loop(1000, repeat=2)
    assert result.final_ecx == 0
    assert result.final_eax == sum(range(1, 1001))
    assert result.insns == 3 * 1000 + 2
    assert len(result.timing.runs) == 2
    assert result.insns_per_second > 0


def test_every_int_0x80_reaches_the_empty_hook():
    result = run_empty_hook(500, repeat=1)
    assert result.final_ecx == 0  # without the hook emu_start would have raised
    assert result.seconds_per_call > 0


def test_the_64_bit_empty_hook_is_on_syscall_in_long_mode(monkeypatch):
    """Each of the loop's syscalls reaches the SYSCALL hook, on a 64-bit CPU."""
    calls = []
    monkeypatch.setattr(emptyhook, "_empty_syscall_hook", lambda uc, _: calls.append(
        uc.reg_read(X.UC_X86_REG_RIP)))
    result = run_empty_hook(300, repeat=1, bits=64)
    assert result.final_ecx == 0
    assert len(calls) == 2 * 300  # the warm-up run and the timed one
    assert decode_one(emptyhook.loop_code(1, 64)[calls[0] - emptyhook.CODE_BASE:],
                      calls[0], 64).mnemonic == "syscall"


def test_every_int_0x80_reaches_the_hypercall_floors_hook():
    result = run_hypercall_floor(500, repeat=1)
    assert result.final_ecx == 0  # every iteration ran (the batch: tests/machine/test_cpu.py)
    assert result.seconds_per_call > 0


@pytest.mark.parametrize("bits", [32, 64])
def test_the_null_hypercall_guest_makes_exactly_the_calls_asked_for(bits):
    result = run_null_hypercalls(50, repeat=2, bits=bits)
    assert result.counted_calls == 50
    assert "poweroff" in result.stop
    assert result.seconds_per_call > 0
    assert len(result.cycles) == 2 and all(cycles > 0 for cycles in result.cycles)
    # the host's TSC rate, in Hz: the calls' cycles over their seconds
    assert result.to_dict()["tsc_hz"] == round(result.cycles_per_call
                                                / result.seconds_per_call)


def test_the_null_hypercall_kernel_prints_a_nanobench_line(tmp_path):
    output = bytearray()
    result = run_image(write_kernel(tmp_path, 7), RunOptions(mode=Mode.PV), output.extend)
    assert result.hypercalls["console_io"] == 2
    (line,) = bytes(output).splitlines()
    assert line.startswith(b"nanobench: null_hypercall n=7 cycles=")
    assert parse_operations(bytes(output))["null_hypercall"].n == 7


@pytest.mark.parametrize("value", [0, 7, 4_294_967_295, 4_294_967_296, 12_345_678_901_234])
def test_the_kernels_decimal_conversion_of_64_bit_cycles(value):
    """The digit loop alone, on a bare CPU, against Python's own decimal: the high word
    carries into the low one."""
    uc = bare_cpu()
    load_code(uc, BASE, assemble(DECIMAL, BASE, 32))
    map_range(uc, DATA, DATA + PAGE_SIZE)
    uc.mem_write(DELTA, struct.pack("<Q", value))
    end = BASE + len(assemble(DECIMAL, BASE, 32))
    uc.emu_start(BASE, end)
    first = uc.reg_read(X.UC_X86_REG_EDI)
    assert bytes(uc.mem_read(first, DIGITS_END - first)) == str(value).encode()


def test_the_null_hypercall_kernel_carries_xen_notes(tmp_path):
    kernel = tmp_path / "k.elf"
    kernel.write_bytes(null_hypercall_kernel(3))
    notes = parse_xen_notes(load_elf(kernel))
    assert notes is not None and notes.entry == 0x100000 and notes.pae_mode == "no"


def test_the_sieve_runs_raw_from_primes_to_its_first_unmap(guests):
    path = guests("minikern")
    result = run_sieve(path, repeat=1)
    image = load_elf(path)
    assert result.start == image.find_symbol("primes").value
    call = decode_one(image.read_virtual(result.stop, 16), result.stop, 32)
    assert call.mnemonic == "call"
    assert int(call.op_str, 16) == image.find_symbol("unmap").value
    # 50000 bytes of sieve in 4 KiB pages; a whole sieve is hundreds of thousands
    # of instructions, every one counted.
    assert result.touched_pages == 13
    assert result.insns > 100_000
    assert result.timing.median > 0 and result.counted_timing.median > 0


def test_an_image_without_the_sieve_is_refused_with_a_reason(guests):
    with pytest.raises(UnsupportedImageError, match="no symbol"):
        run_sieve(guests("hello"), repeat=1)
