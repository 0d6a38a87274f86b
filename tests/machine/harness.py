"""Boot a test guest on pvtool's native machine (Machine + Multiboot loader +
BareMetal) and keep the machine for inspection, and run the same guest on QEMU.

The loop here is deliberately simpler than run.py's: these tests are about the
machine, so a guest must stop by itself (debug exit, triple fault, emulator error)
within a bounded number of slices.
"""

from dataclasses import dataclass, field

import pytest

from pvtool.image.elf import load_elf
from pvtool.machine.loader import BootState, load_multiboot
from pvtool.machine.native import BareMetal
from pvtool.machine.pc import Machine
from pvtool.machine.stop import Stop
from tests.guests_asm.build import Guest
from tests.oracles import QEMU, QEMU64, QemuResult, run_qemu

SLICE = 100_000
MAX_SLICES = 3


@dataclass
class NativeRun:
    guest: Guest
    machine: Machine
    boot: BootState
    output: bytearray = field(default_factory=bytearray)

    @property
    def stop(self) -> Stop:
        return self.machine.stop

    def u32(self, where: str | int) -> int:
        addr = self.guest[where] if isinstance(where, str) else where
        return self.machine.memory.read_u32(addr)

    def records(self) -> list[int]:
        count = self.u32("record_count")
        return [self.u32(self.guest["records"] + 4 * i) for i in range(count)]

    def records64(self) -> list[int]:
        """runtime64.s's records: qwords."""
        count = self.u32("record_count")
        base = self.guest["records"]
        return [int.from_bytes(self.machine.memory.read_phys(base + 8 * i, 8), "little")
                for i in range(count)]


def boot_native(guest: Guest, *, ram_mib: int = 128, cmdline: bytes = b"",
                input_data: bytes = b"", bits: int = 32) -> NativeRun:
    """GUEST on the PC of qemu-system-i386, or of qemu-system-x86_64 with BITS 64."""
    output = bytearray()
    machine = Machine(ram_size=ram_mib << 20, output=output.extend, input_data=input_data,
                      bits=bits, native_cpu=True)
    boot = load_multiboot(machine, load_elf(guest.elf), cmdline=cmdline)
    machine.attach(BareMetal(machine))
    machine.present_cpuid(machine.cpu_model.cpuid)
    return NativeRun(guest, machine, boot, output)


def run_native(guest: Guest, **kwargs) -> NativeRun:
    run = boot_native(guest, **kwargs)
    for _ in range(MAX_SLICES):
        run.machine.run_slice(SLICE)
        if run.machine.stop is not None:
            return run
    pytest.fail(f"the guest did not stop within {MAX_SLICES * SLICE} instructions; "
                f"it printed {bytes(run.output)!r}")


_qemu_cache: dict[tuple, QemuResult] = {}


def qemu(guest: Guest, *extra_args: str, program: str = QEMU) -> QemuResult:
    """QEMU's run of the guest (cached: QEMU is deterministic for these guests), by
    PROGRAM: qemu-system-i386, or QEMU64 for the x86_64 PC."""
    key = (guest.elf, extra_args, program)
    if key not in _qemu_cache:
        _qemu_cache[key] = run_qemu(guest.elf, timeout=20, extra_args=extra_args,
                                    qemu=program)
    return _qemu_cache[key]


def drop_no_translated_code(monkeypatch) -> None:
    """Make every GuestMemory made from now on leave QEMU's translated code alone
    when pvtool writes guest memory: what Unicorn alone does (machine/memory.py), for
    tests that show their guest would then run stale code."""
    from pvtool.machine.memory import GuestMemory

    init = GuestMemory.__init__

    def without_invalidation(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._invalidate_code = lambda start, end: None

    monkeypatch.setattr(GuestMemory, "__init__", without_invalidation)


def hex_lines(values: list[int]) -> bytes:
    """What the runtime prints for these records."""
    return b"".join(b"%08x\n" % v for v in values)


def assert_same_as_qemu(run: NativeRun, *extra_args: str) -> QemuResult:
    """QEMU of the run's PC (qemu-system-x86_64 for a 64-bit machine), booting the same
    guest, prints the same bytes and ends the same way."""
    from pvtool.machine.stop import StopKind

    program = QEMU64 if run.machine.cpu.bits == 64 else QEMU
    judge = qemu(run.guest, *extra_args, program=program)
    assert bytes(run.output) == judge.stdout
    if run.stop.kind is StopKind.GUEST_EXIT:
        assert judge.guest_code == run.stop.code
    else:  # -no-reboot: a triple fault ends QEMU with status 0, no exit code
        assert run.stop.kind is StopKind.TRIPLE_FAULT
        assert (judge.status, judge.guest_code) == (0, None)
    return judge
