"""A native guest sweeping unassigned memory (machine/mmio.py's open bus) reads 0, as
on QEMU, costs a bounded number of maps, and ends by --max-insns or --timeout in
bounded time (machine/watchdog.py). The image fuzzer found the hang this guards
against: mapping open bus a page at a time made such a sweep O(pages^2) inside one
hook, past both limits; its two images are rebuilt here from hello by their bytes.
"""

from functools import partial

import pytest

from pvtool.machine.stop import StopKind
from pvtool.run import Mode, RunOptions, run_image
from tests import cli
from tests.guests_asm.build import BARE, GuestBuilder
from tests.oracles import guest_path, run_qemu

GUEST_LIMIT = 78
UNASSIGNED = 0x10000000  # 256 MiB: past the RAM of pvtool's and QEMU's default PC
SLACK = 1.0  # seconds a run may last past its --timeout (a REPEAT, a loaded machine)

# Reads then writes all ones at every page from UNASSIGNED to {end}, ORing what it
# read into ebx; then exits through isa-debug-exit with code 0x20 | (ebx != 0).
SWEEP = BARE + """
    cld
    xor %ebx, %ebx
    mov $0x10000000, %esi
1:  or (%esi), %ebx
    movl $0xffffffff, (%esi)
    add $0x1000, %esi
    cmp ${end}, %esi
    jb 1b
    test %ebx, %ebx
    setne %al
    or $0x20, %al
    mov $0xf4, %dx
    out %al, %dx
    hlt
"""
SWEPT_PAGES = 0x4000  # 64 MiB
# Copies 64 MiB of open bus onto open bus, again and again: two MMIO callbacks per
# instruction, so one slice of a million instructions lasts seconds.
COPY_FOREVER = BARE + """
    cld
1:  mov $0x10000000, %esi
    mov $0x20000000, %edi
    mov $0x01000000, %ecx
    rep movsl
    jmp 1b
"""
# The fuzzer's hangs, as the bytes they change in build/guests/hello.elf: (file
# offset, hello's byte, the mutant's). Both turn hello's first instruction (push %ebp
# at 0x101000) into `add %al,(%eax)`.
HANG_1 = ((0x2000, 0x55, 0x00), (0x2033, 0xE8, 0x00))
HANG_2 = ((0x2000, 0x55, 0x00), (0x20F5, 0x94, 0x9F), (0x20F6, 0xC0, 0x76),
          (0x20F7, 0x89, 0x60), (0x20F8, 0x04, 0x6F), (0x20F9, 0x24, 0xA9),
          (0x20FA, 0xE8, 0xBC), (0x20FB, 0xF1, 0xB4), (0x20FC, 0x01, 0x4E))

pvtool = partial(cli.pvtool, process=True, timeout=60)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    builder = GuestBuilder(tmp_path_factory.mktemp("open-bus-guests"))
    return lambda source: builder.build(source, runtime=False)


def mutant(recipe, folder):
    """hello.elf with RECIPE's bytes changed, after checking hello still has the bytes
    the recipe was read from (a rebuilt hello would make it another image)."""
    image = bytearray(guest_path("hello").read_bytes())
    for offset, original, mutated in recipe:
        assert image[offset] == original, f"hello.elf changed at {offset:#x}"
        image[offset] = mutated
    path = folder / "mutant.elf"
    path.write_bytes(bytes(image))
    return path


def test_a_sweep_reads_zero_as_on_qemu(build):
    guest = build(SWEEP.format(end=UNASSIGNED + SWEPT_PAGES * 0x1000))
    judge = run_qemu(guest.elf, timeout=60)
    result = run_image(guest.elf, RunOptions(mode=Mode.NATIVE, max_insns=1_000_000),
                       output=lambda data: None)
    assert judge.guest_code == 0x20  # ebx stayed 0: every read gave 0
    assert (result.stop.kind, result.stop.code) == (StopKind.GUEST_EXIT, judge.guest_code)


def test_max_insns_ends_a_sweep_of_all_unassigned_memory(build):
    guest = build(SWEEP.format(end=0xFEC00000))
    done = pvtool("run", "--native", "--max-insns", "200000", "--timeout", "30", guest.elf)
    assert done.status == GUEST_LIMIT
    assert "insn-limit: ran past --max-insns 200000" in done.stderr


def test_timeout_ends_a_slice_of_slow_instructions(build):
    """One slice of COPY_FOREVER lasts seconds: the watchdog ends it at the deadline."""
    guest = build(COPY_FOREVER)
    result = run_image(guest.elf, RunOptions(mode=Mode.NATIVE, timeout=0.5),
                       output=lambda data: None)
    assert result.stop.kind is StopKind.TIMEOUT
    assert result.wall_seconds < 0.5 + SLACK
    assert result.slices == 1


@pytest.mark.parametrize("recipe", [HANG_1, HANG_2], ids=["hang-1", "hang-2"])
def test_the_fuzzers_hangs_end_by_max_insns(recipe, tmp_path):
    done = pvtool("run", "--native", "--max-insns", "200000", "--timeout", "5",
                  mutant(recipe, tmp_path))
    assert done.status == GUEST_LIMIT
    assert "insn-limit: ran past --max-insns 200000" in done.stderr


@pytest.mark.parametrize("recipe", [HANG_1, HANG_2], ids=["hang-1", "hang-2"])
def test_the_fuzzers_hangs_end_by_timeout(recipe, tmp_path):
    result = run_image(mutant(recipe, tmp_path), RunOptions(mode=Mode.NATIVE, timeout=1),
                       output=lambda data: None)
    assert result.stop.kind is StopKind.TIMEOUT
    assert result.wall_seconds < 1 + SLACK
