"""bench/uncounted.py: a guest's native run with Unicorn's instruction count off, and
when the bench may take it (bench/versus_qemu.py)."""

from collections import Counter
from pathlib import Path

from pvtool.bench.uncounted import needs_time, run_uncounted
from pvtool.bench.versus_qemu import uncounted_beside
from pvtool.bench.workloads import ModeRuns
from pvtool.machine.exits import Exit
from pvtool.machine.stop import StopKind
from pvtool.run import Mode, RunOptions, run_image
from tests.guests_asm.build import GuestBuilder

LOOP_FOR_EVER = """
    .text
    .long 0x1BADB002, 0x3, -(0x1BADB002 + 0x3)
    .globl _start
_start:
    jmp _start
"""


def native_runs(image: Path) -> ModeRuns:
    output = bytearray()
    result = run_image(image, RunOptions(mode=Mode.NATIVE), output.extend)
    return ModeRuns(Mode.NATIVE, image, results=[result], outputs=[bytes(output)])


def test_hello_uncounted_prints_the_counted_runs_bytes_and_exit_code(guests):
    counted = native_runs(guests("hello"))

    run = uncounted_beside(guests("hello"), counted)

    assert run.output == counted.outputs[0]
    assert run.output.endswith(b"hello: all 13 checks passed\n")
    assert (run.stop.kind, run.stop.code) == (StopKind.GUEST_EXIT, 0)
    assert run.seconds > 0


def test_a_run_that_took_device_interrupts_or_waited_is_not_repeated_uncounted():
    assert needs_time(Counter({Exit.IO: 9, Exit.INTERRUPT: 1})) is None
    assert needs_time(Counter({Exit.IO: 9, Exit.IRQ: 3})) == (
        "its native run took irq exits, which need virtual time")
    assert needs_time(Counter({Exit.IRQ: 3, Exit.HLT: 1})) == (
        "its native run took irq and hlt exits, which need virtual time")


def test_the_bench_says_why_a_timer_driven_guest_has_no_uncounted_run(guests):
    runs = native_runs(guests("ioheavy"))

    assert uncounted_beside(guests("ioheavy"), runs) == (
        "its native run took irq exits, which need virtual time")


def test_an_uncounted_guest_that_never_stops_is_stopped_at_the_timeout(tmp_path):
    kernel = GuestBuilder(tmp_path).build(LOOP_FOR_EVER, runtime=False)

    run = run_uncounted(kernel.elf, timeout=0.5)

    assert run.stop.kind is StopKind.TIMEOUT
    assert run.output == b""
    assert 0.5 <= run.seconds < 30


def test_the_versus_qemu_table_names_the_uncounted_run_and_its_ratios():
    from pvtool import console
    from pvtool.bench import view

    uncounted = {"ok": True, "error": None, "seconds": 0.012,
                 "counted_over_uncounted": 2.0, "over_qemu_less_startup": 3.0}
    data = {"repeat": 1, "qemu": {"program": "qemu-system-i386", "version": "7.2"},
            "guests": [{"name": "sieve", "qemu": {"ok": False, "error": "not installed",
                                                   "uncounted": uncounted}}]}
    with console.stdout.capture() as captured:
        console.stdout.print(view.versus_qemu_table(data))

    text = " ".join(captured.get().split())
    assert ("sieve without the instruction count: 12.0 ms, the count costs 2.00x; "
            "uncounted alone is 3.00x QEMU less start-up") in text
