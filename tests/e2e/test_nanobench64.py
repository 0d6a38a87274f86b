"""guests/nanobench64 boots on qemu-system-x86_64 and on pvtool's x86_64 PC and prints
nanobench's lines: the same operations as the 32-bit guest, measured the same way. The
figures are measurements (rdtsc, host time under pvtool) and are only checked for
shape, never for value."""

from functools import partial

import pytest

from tests import cli
from tests.e2e.test_nanobench import check, parse
from tests.oracles import QEMU64, guest_path, run_qemu

pvtool = partial(cli.pvtool, process=True, timeout=300)


@pytest.fixture(scope="module")
def nanobench64():
    return guest_path("nanobench64")


def test_on_qemu(nanobench64):
    judge = run_qemu(nanobench64, timeout=60, qemu=QEMU64)
    assert judge.guest_code == 0, judge.stdout
    check(parse(judge.stdout))


def test_on_pvtools_x86_64_pc(nanobench64):
    done = pvtool("run", "--native", "--quiet", str(nanobench64))
    assert done.status == 0, done.stderr
    check(parse(done.stdout_bytes))


def test_each_handled_page_fault_is_one_delivered_exception(nanobench64):
    """The page-fault benchmark's faults are the run's only exceptions: each is one
    delivery through the 64-bit IDT, and its handler's return resumes the access."""
    from pvtool.run import Mode, RunOptions, run_image

    output = bytearray()
    run = run_image(nanobench64, RunOptions(mode=Mode.NATIVE), output.extend)
    assert run.stop.code == 0
    figures = parse(bytes(output))
    assert figures["page_fault"][0] == 256
    assert run.exits["exception"] == figures["page_fault"][0]
