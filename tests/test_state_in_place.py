"""What pvtool reads in place (machine/memory.py's RAM, machine/cpu_state.py's control
registers) equals what Unicorn's own API reads, at random points of real guests' runs
in every paging mode they use: inside a block hook (where the hypervisor reads) and
between slices."""

import contextlib
import random

import pytest
from unicorn import UC_HOOK_BLOCK

from pvtool.hv.boot import boot_pv_domain
from pvtool.image.elf import load_elf
from pvtool.machine.cpu import CR0, CR2, CR3, CR4
from pvtool.machine.native import boot_bare_pc
from pvtool.machine.pc import Machine
from pvtool.x86.paging import PAGE_SIZE, AddressFault, PagingMode
from tests.oracles import guest_path

CONTROL = (CR0, CR2, CR3, CR4)
MAX_INSNS = 3_000_000  # boot, paging on, and well into each guest's work


def boot(name: str, mode: str) -> Machine:
    image = load_elf(guest_path(name))
    machine = Machine(output=lambda _: None, bits=image.bits, native_cpu=mode == "native")
    if mode == "native":
        boot_bare_pc(machine, image, cmdline=b"", modules=())
    else:
        boot_pv_domain(machine, image, cmdline=b"", modules=())
    return machine


def mismatches(machine: Machine, rng: random.Random) -> list[str]:
    """Where the control registers, the page CR3 names, the stack's page and a random
    page of RAM read in place differ from Unicorn's reads (an empty list: nowhere)."""
    cpu, memory, uc = machine.cpu, machine.memory, machine.uc
    found = [f"CR{reg - CR0}" for reg in CONTROL if cpu.read(reg) != uc.reg_read(reg)]
    pages = {cpu.read(CR3) & ~0xFFF, rng.randrange(machine.ram_size // PAGE_SIZE) * PAGE_SIZE}
    with contextlib.suppress(AddressFault):  # a stack not mapped (yet): not compared
        pages.add(_physical(memory, cpu.read(cpu.width.sp)) & ~0xFFF)
    for page in pages:
        if page + PAGE_SIZE <= machine.ram_size and \
                memory.read_phys(page, PAGE_SIZE) != bytes(uc.mem_read(page, PAGE_SIZE)):
            found.append(f"page {page:#x}")
    return found


def _physical(memory, vaddr: int) -> int:
    """VADDR's physical address, walked afresh (the hypervisor's kept translations are
    left alone)."""
    return memory.walk(vaddr).paddr if memory.paging_mode() else vaddr


# (guest, how it boots, the paging modes it must be seen in, the share of its blocks
# where the hook compares: the PV guests run few instructions between their waits)
@pytest.mark.parametrize(("name", "mode", "modes", "sample"), [
    ("highhalf", "native", {None, PagingMode.TWO_LEVEL}, 0.002),
    ("minikern64", "native", {None, PagingMode.FOUR_LEVEL}, 0.002),
    ("xenhello", "pv", {PagingMode.PAE}, 0.1),
    ("xenhello64", "pv", {PagingMode.FOUR_LEVEL}, 0.1),
])
def test_reads_in_place_equal_unicorns_at_random_points_of_a_guests_run(name, mode, modes,
                                                                          sample):
    machine = boot(name, mode)
    rng = random.Random(name)
    seen_modes, samples = {machine.memory.paging_mode()}, [0]
    bad = [f"at entry: {where}" for where in mismatches(machine, rng)]

    def on_block(uc, address, size, _):
        if rng.random() < sample:
            samples[0] += 1
            seen_modes.add(machine.memory.paging_mode())
            bad.extend(f"in a hook at {address:#x}: {where}" for where in mismatches(machine, rng))

    machine.uc.hook_add(UC_HOOK_BLOCK, on_block)
    executed = 0
    while machine.stop is None and executed < MAX_INSNS:
        machine.supervisor.take_interrupt(machine.irqs)
        count = rng.randrange(1, 60_000)
        machine.run_slice(count)
        machine.advance(count)
        executed += count
        seen_modes.add(machine.memory.paging_mode())
        bad.extend(f"between slices: {where}" for where in mismatches(machine, rng))
    assert bad == []
    assert samples[0] > 50 and modes <= seen_modes
