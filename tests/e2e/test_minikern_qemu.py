"""minikern on QEMU. QEMU is the judge of what a guest prints (DESIGN.md, "Guests"): these
are the bytes pvtool's native and paravirtualized runs of minikern must reproduce.

minikern's output is deterministic by design: its processes write into per-process logs
that the kernel prints in pid order once all of them have exited, and nothing it prints
depends on when timer interrupts arrive. The one line that changes from boot to boot is
the boot counter it keeps in sector 1 of the disk.
"""

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.oracles import QemuResult, guest_path, run_qemu

DISK_SIZE = 256 * 1024  # a blank disk: no boot record yet
SECTOR = 512
BOOT_RECORD_SECTOR = 1
BOOT_RECORD_MAGIC = b"minikern"

DISK_LINE = b"disk: boot count %d, written, flushed and read back ok\n"
NO_DISK_LINE = b"disk: no ATA disk, boot count 1, not saved\n"

# The lines before and after the disk's.
BOOT_OUTPUT = (
    b"minikern: multiboot handoff, 8 MiB of memory ok\n"
    b"gdt: ring 0 and ring 3 code and data segments, tss loaded\n"
    b"paging: kernel mapped with 4 KiB pages, program text shared with ring 3 ok\n"
    b"pic: 8259 pair remapped to vectors 32-47, all lines masked ok\n"
    b"idt: exceptions, irqs 32-47, system call gate int 0x80 for ring 3\n"
    b"selftest: after cli, pushf shows IF clear ok\n"
    b"selftest: popf restores IF, set and clear ok\n"
    b"selftest: sgdt returns what lgdt loaded ok\n"
    b"selftest: sidt returns what lidt loaded ok\n"
    b"timer: 8254 channel 0 at 100 Hz, interrupts arriving ok\n"
)
PROCESS_OUTPUT = (
    b"proc: starting primes chatty mapper intruder\n"
    b"trap: pid 4 (intruder) page fault: write to kernel memory, killed\n"
    b"proc: all 4 processes exited; their output, in pid order:\n"
    b"pid 1 primes | 5133 primes below 50000, the largest 49999\n"
    b"pid 1 primes | every round found the same primes: yes\n"
    b"pid 1 primes: exit 0, preempted: yes ok\n"
    b"pid 2 chatty | round 1: 51 system calls so far\n"
    b"pid 2 chatty | round 2: 103 system calls so far\n"
    b"pid 2 chatty | round 3: 155 system calls so far\n"
    b"pid 2 chatty | round 4: 207 system calls so far\n"
    b"pid 2 chatty | round 5: 260 system calls so far\n"
    b"pid 2 chatty | round 6: 312 system calls so far\n"
    b"pid 2 chatty | round 7: 364 system calls so far\n"
    b"pid 2 chatty | round 8: 416 system calls so far\n"
    b"pid 2 chatty | 420 system calls in all, getpid always 2: yes\n"
    b"pid 2 chatty: exit 0 ok\n"
    b"pid 3 mapper | 64 map, fill, check, unmap cycles: ok\n"
    b"pid 3 mapper | 8 pages at once, remapped pages fresh: ok\n"
    b"pid 3 mapper | 6 of 6 bad requests refused\n"
    b"pid 3 mapper: exit 0 ok\n"
    b"pid 4 intruder | writing to kernel memory\n"
    b"pid 4 intruder: killed ok\n"
    b"kernel: memory the intruder wrote to is unchanged ok\n"
    b"kernel: every page the processes used was freed ok\n"
    b"minikern: all 21 checks passed\n"
)


def expected_output(disk_line: bytes) -> bytes:
    return BOOT_OUTPUT + disk_line + PROCESS_OUTPUT


def boot_record(disk: Path) -> bytes:
    data = disk.read_bytes()
    return data[BOOT_RECORD_SECTOR * SECTOR:(BOOT_RECORD_SECTOR + 1) * SECTOR]


def record_with_count(count: int) -> bytes:
    """The sector as minikern writes it: magic, count (32-bit little endian), zeros."""
    record = BOOT_RECORD_MAGIC + count.to_bytes(4, "little")
    return record + bytes(SECTOR - len(record))


@dataclass(frozen=True)
class Boot:
    result: QemuResult
    record: bytes  # sector 1 of the disk after this boot
    disk_size: int


@pytest.fixture(scope="module")
def boots(tmp_path_factory: pytest.TempPathFactory) -> list[Boot]:
    """Three boots of minikern on one blank disk, in order."""
    elf = guest_path("minikern")
    disk = tmp_path_factory.mktemp("minikern") / "disk.img"
    disk.write_bytes(bytes(DISK_SIZE))
    done = []
    for _ in range(3):
        result = run_qemu(elf, disk=disk, timeout=30)
        done.append(Boot(result, boot_record(disk), disk.stat().st_size))
    return done


def test_first_boot_passes_every_check_and_formats_the_boot_record(boots):
    first = boots[0]

    assert first.result.stdout == expected_output(DISK_LINE % 1)
    assert first.result.guest_code == 0
    assert first.record == record_with_count(1)
    assert first.disk_size == DISK_SIZE


def test_second_boot_counts_2_and_writes_it_back_to_the_disk(boots):
    second = boots[1]

    assert second.result.stdout == expected_output(DISK_LINE % 2)
    assert second.result.guest_code == 0
    assert second.record == record_with_count(2)


def test_runs_differ_only_in_the_boot_count_line(boots):
    outputs = [boot.result.stdout.splitlines(keepends=True) for boot in boots]
    counter_line = len(BOOT_OUTPUT.splitlines())

    assert [out[counter_line] for out in outputs] == [DISK_LINE % n for n in (1, 2, 3)]
    for out in outputs[1:]:
        assert out[:counter_line] + out[counter_line + 1:] == (
            outputs[0][:counter_line] + outputs[0][counter_line + 1:]
        )
    assert boots[2].result.guest_code == 0
    assert boots[2].record == record_with_count(3)


def test_without_a_disk_the_count_is_1_and_not_saved():
    result = run_qemu(guest_path("minikern"), timeout=30)

    assert result.stdout == expected_output(NO_DISK_LINE)
    assert result.guest_code == 0
