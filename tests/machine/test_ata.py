"""The primary ATA channel driven as xv6's ide.c and Linux's PIO paths drive it, against
ATA/ATAPI-6's register descriptions and PIO protocols."""

import os

import pytest

from pvtool.machine.ata import AtaDisk, EmptyCdrom
from pvtool.machine.ata_identify import identify_block
from pvtool.machine.disk import SECTOR_SIZE, DiskImage
from pvtool.machine.pic import Pic8259Pair
from pvtool.machine.ports import PortBus
from tests.oracles import run_qemu

SECTORS = 64
DATA, ERROR, COUNT, LBA_LOW, LBA_MID, LBA_HIGH, DEVICE, STATUS = range(0x1F0, 0x1F8)
CONTROL = 0x3F6
BSY, DRDY, DF, DSC, DRQ, ERR = 0x80, 0x40, 0x20, 0x10, 0x08, 0x01
ABRT, IDNF = 0x04, 0x10
READY = DRDY | DSC
MASTER_LBA, SLAVE_LBA = 0xE0, 0xF0


def pattern(sector: int) -> bytes:
    return bytes((sector * 13 + i) & 0xFF for i in range(SECTOR_SIZE))


class Channel:
    """The channel on a port bus, with the few port operations a driver uses; with a
    PIC pair, wired to it as on a PC (each interrupt an edge on IRQ14)."""

    def __init__(self, disk: DiskImage | EmptyCdrom | None,
                 pic: Pic8259Pair | None = None, slave: DiskImage | None = None):
        self.irqs = 0
        self.pic = pic
        self.ata = AtaDisk(disk, self._irq, slave)
        self.bus = PortBus()
        self.bus.register(self.ata.command_block, 0x1F0, 8)
        self.bus.register(self.ata.control_block, 0x3F6, 1)
        if pic is not None:
            self.bus.register(pic.master, 0x20, 2)
            self.bus.register(pic.slave, 0xA0, 2)

    def _irq(self) -> None:
        self.irqs += 1
        if self.pic is not None:
            self.pic.set_line(14, True)
            self.pic.set_line(14, False)

    def outb(self, port: int, value: int) -> None:
        self.bus.write(port, 1, value)

    def inb(self, port: int) -> int:
        return self.bus.read(port, 1)

    def command(self, command: int, lba: int = 0, count: int = 1,
                device: int = MASTER_LBA) -> None:
        """xv6's idestart: count, LBA bytes, device with LBA 27:24, command."""
        self.outb(COUNT, count)
        self.outb(LBA_LOW, lba & 0xFF)
        self.outb(LBA_MID, lba >> 8 & 0xFF)
        self.outb(LBA_HIGH, lba >> 16 & 0xFF)
        self.outb(DEVICE, device | (lba >> 24 & 0x0F))
        self.outb(STATUS, command)

    def read_words(self, words: int = 256) -> bytes:
        return b"".join(self.bus.read(DATA, 2).to_bytes(2, "little") for _ in range(words))

    def write_words(self, data: bytes) -> None:
        for i in range(0, len(data), 2):
            self.bus.write(DATA, 2, int.from_bytes(data[i:i + 2], "little"))


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(b"".join(pattern(s) for s in range(SECTORS)))
    return path


@pytest.fixture
def disk(image):
    disk = DiskImage.open(image, snapshot=False)
    yield disk
    disk.close()


@pytest.fixture
def channel(disk) -> Channel:
    return Channel(disk)


def sector_of(path, lba: int) -> bytes:
    return path.read_bytes()[lba * SECTOR_SIZE:(lba + 1) * SECTOR_SIZE]


# ---- reset state ------------------------------------------------------------------------

def test_power_on_shows_ready_and_the_ata_signature(channel):
    assert channel.inb(STATUS) == READY and channel.inb(CONTROL) == READY
    assert channel.inb(ERROR) == 0x01  # diagnostic passed
    assert [channel.inb(p) for p in (COUNT, LBA_LOW, LBA_MID, LBA_HIGH)] == [1, 1, 0, 0]


def test_software_reset_holds_bsy_then_restores_the_signature(channel):
    channel.command(0x00)  # an aborted command leaves ERR behind
    channel.outb(LBA_MID, 0x55)
    channel.outb(CONTROL, 0x04)
    assert channel.inb(STATUS) == BSY and channel.inb(CONTROL) == BSY
    channel.outb(CONTROL, 0x00)
    assert channel.inb(STATUS) == READY and channel.inb(ERROR) == 0x01
    assert [channel.inb(p) for p in (COUNT, LBA_LOW, LBA_MID, LBA_HIGH)] == [1, 1, 0, 0]


# ---- IDENTIFY DEVICE --------------------------------------------------------------------

def test_identify_gives_one_block_with_an_interrupt(channel):
    channel.outb(DEVICE, 0xA0)
    channel.outb(STATUS, 0xEC)
    assert channel.irqs == 1
    assert channel.inb(STATUS) == READY | DRQ
    block = channel.read_words()
    assert channel.inb(STATUS) == READY and channel.irqs == 1  # no IRQ at the end
    assert block == identify_block(SECTORS)


def test_identify_words_describe_an_lba_disk():
    block = identify_block(SECTORS)
    words = [int.from_bytes(block[i:i + 2], "little") for i in range(0, 512, 2)]
    assert words[60] | words[61] << 16 == SECTORS
    assert words[0] & 0x8000 == 0  # an ATA device
    assert words[49] & 0x0200  # LBA supported
    assert words[83] & 0x1000 and words[83] & 0xC000 == 0x4000  # FLUSH CACHE
    model = b"".join(w.to_bytes(2, "big") for w in words[27:47]).decode()
    assert model == "QEMU HARDDISK".ljust(40)  # as QEMU's (tests/e2e/test_pcprobe.py)
    assert words[255] & 0xFF == 0xA5 and sum(block) & 0xFF == 0


@pytest.mark.parametrize("sectors, cylinders", [(16, 2), (1228800, 1219), (1 << 26, 16383)])
def test_identify_geometry_is_qemus_guess_from_the_size(sectors, cylinders):
    words = [int.from_bytes(identify_block(sectors)[i:i + 2], "little") for i in range(0, 14, 2)]
    assert (words[1], words[3], words[6]) == (cylinders, 16, 63)


def test_identify_serial_counts_drives_by_index():
    serial = bytes(identify_block(16, 3)[20:40])
    assert b"".join(serial[i + 1:i + 2] + serial[i:i + 1] for i in range(0, 20, 2)) == (
        b"QM00004".ljust(20))


def test_identify_caps_the_sector_count_at_lba28():
    block = identify_block(1 << 30)
    assert int.from_bytes(block[120:124], "little") == 0x0FFFFFFF  # words 60-61


# ---- READ SECTORS -----------------------------------------------------------------------

def test_read_sector_1_returns_the_file_s_bytes(channel, image):
    channel.command(0x20, lba=1)
    assert channel.irqs == 1 and channel.inb(STATUS) & DRQ
    assert channel.read_words() == sector_of(image, 1)
    assert channel.inb(STATUS) == READY and channel.irqs == 1


def test_read_several_sectors_interrupts_once_per_sector(channel):
    channel.command(0x20, lba=10, count=3)
    data = b""
    for sector in range(3):
        assert channel.irqs == sector + 1
        assert channel.inb(STATUS) == READY | DRQ
        data += channel.read_words()
    assert data == pattern(10) + pattern(11) + pattern(12)
    assert channel.irqs == 3 and channel.inb(STATUS) == READY
    assert channel.inb(COUNT) == 0 and channel.inb(LBA_LOW) == 13


def test_registers_move_on_as_each_sector_is_offered(channel):
    channel.command(0x20, lba=10, count=3)
    assert channel.inb(COUNT) == 2 and channel.inb(LBA_LOW) == 11  # QEMU's order


def test_32_bit_reads_take_two_words(channel):
    channel.command(0x21, lba=4)  # READ SECTORS without retries
    data = b"".join(channel.bus.read(DATA, 4).to_bytes(4, "little") for _ in range(128))
    assert data == pattern(4)


def test_lba_bits_27_to_24_come_from_the_device_register(channel):
    channel.command(0x20, lba=0x1000000)
    assert channel.inb(STATUS) == DRDY | ERR and channel.inb(ERROR) == IDNF


def test_read_past_the_end_fails_with_idnf_at_the_bad_sector(channel):
    channel.command(0x20, lba=SECTORS - 1, count=2)
    assert channel.read_words() == pattern(SECTORS - 1)
    assert channel.inb(STATUS) == DRDY | ERR
    assert channel.inb(ERROR) == IDNF
    assert channel.inb(LBA_LOW) == SECTORS  # the address that failed
    assert channel.irqs == 2  # the sector, then the error


def test_sector_count_zero_means_256(channel):
    channel.command(0x20, lba=0, count=0)
    for _ in range(SECTORS):
        channel.read_words()
    assert channel.inb(STATUS) == DRDY | ERR and channel.inb(ERROR) == IDNF


def test_chs_addressing_is_aborted(channel):
    channel.command(0x20, lba=1, device=0xA0)
    assert channel.inb(STATUS) == DRDY | ERR and channel.inb(ERROR) == ABRT
    assert channel.irqs == 1


def test_data_port_without_drq_reads_zero(channel):
    assert channel.bus.read(DATA, 2) == 0


# ---- WRITE SECTORS ----------------------------------------------------------------------

def test_write_reaches_the_file(channel, image):
    channel.command(0x30, lba=2)
    assert channel.inb(STATUS) == READY | DRQ and channel.irqs == 0
    channel.write_words(b"\xC3" * SECTOR_SIZE)
    assert channel.irqs == 1 and channel.inb(STATUS) == READY
    assert sector_of(image, 2) == b"\xC3" * SECTOR_SIZE
    assert sector_of(image, 3) == pattern(3)


def test_write_several_sectors_interrupts_after_each(channel, image):
    channel.command(0x30, lba=7, count=2)
    channel.write_words(b"\x11" * SECTOR_SIZE)
    assert channel.irqs == 1 and channel.inb(STATUS) == READY | DRQ
    channel.bus.write(DATA, 4, 0x22222222)  # 32-bit writes take two words
    for _ in range(127):
        channel.bus.write(DATA, 4, 0x22222222)
    assert channel.irqs == 2 and channel.inb(STATUS) == READY
    assert sector_of(image, 8) == b"\x22" * SECTOR_SIZE


def test_write_past_the_end_fails_with_idnf(channel, image):
    before = image.read_bytes()
    channel.command(0x30, lba=SECTORS)
    channel.write_words(bytes(SECTOR_SIZE))
    assert channel.inb(STATUS) == DRDY | ERR and channel.inb(ERROR) == IDNF
    assert image.read_bytes() == before


def test_snapshot_leaves_the_file_untouched(image):
    before, mtime = image.read_bytes(), image.stat().st_mtime_ns
    with DiskImage.open(image, snapshot=True) as disk:
        channel = Channel(disk)
        channel.command(0x30, lba=3)
        channel.write_words(b"\x99" * SECTOR_SIZE)
        channel.command(0xE7)
        assert channel.inb(STATUS) == READY
        channel.command(0x20, lba=3)
        assert channel.read_words() == b"\x99" * SECTOR_SIZE
    assert image.read_bytes() == before and image.stat().st_mtime_ns == mtime


# ---- other commands ---------------------------------------------------------------------

def test_cache_flush_syncs_the_image(channel, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    channel.command(0xE7)
    assert synced and channel.irqs == 1 and channel.inb(STATUS) == READY


def test_set_features_is_accepted(channel):
    channel.outb(ERROR, 0x03)  # set transfer mode
    channel.command(0xEF, count=0x0C)
    assert channel.inb(STATUS) == READY and channel.irqs == 1


@pytest.mark.parametrize("command", [0xC8, 0xCA, 0x24, 0xEA, 0x91, 0x00])
def test_other_commands_are_aborted(channel, command):
    channel.command(command)
    assert channel.inb(STATUS) == DRDY | ERR and channel.inb(ERROR) == ABRT
    assert channel.irqs == 1


def test_a_command_while_drq_is_set_is_ignored(channel):
    channel.command(0x20, lba=5)
    channel.outb(STATUS, 0xEC)
    assert channel.read_words() == pattern(5)


# ---- interrupts -------------------------------------------------------------------------

def test_nien_masks_the_interrupt(channel):
    channel.outb(CONTROL, 0x02)
    channel.command(0x20, lba=1)
    assert channel.irqs == 0 and channel.ata.interrupt_pending
    assert channel.inb(CONTROL) == READY | DRQ


def test_status_read_clears_the_interrupt_but_alternate_status_does_not(channel):
    channel.command(0xE7)
    channel.inb(CONTROL)
    assert channel.ata.interrupt_pending
    channel.inb(STATUS)
    assert not channel.ata.interrupt_pending


# ---- absent devices ---------------------------------------------------------------------

def test_absent_slave_reads_zero_status_and_ignores_commands(channel):
    channel.outb(DEVICE, SLAVE_LBA)
    assert channel.inb(STATUS) == 0 and channel.inb(CONTROL) == 0
    assert channel.inb(ERROR) == 0
    channel.outb(STATUS, 0xEC)
    assert channel.irqs == 0 and channel.inb(STATUS) == 0
    assert channel.inb(DEVICE) == SLAVE_LBA  # the shared registers still answer


def test_xv6_probe_for_disk_1_finds_nothing(channel):
    channel.outb(DEVICE, 0xE0 | 1 << 4)
    assert all(channel.inb(STATUS) == 0 for _ in range(1000))
    channel.outb(DEVICE, 0xE0)
    assert channel.inb(STATUS) == READY


def test_no_disk_reads_zero_everywhere():
    channel = Channel(None)
    for port in range(0x1F1, 0x1F8):
        assert channel.inb(port) == 0
    assert channel.inb(CONTROL) == 0 and channel.bus.read(DATA, 2) == 0


def test_no_disk_still_interrupts_a_command_to_device_0_as_qemu_does():
    channel = Channel(None)
    channel.command(0xEC, device=0xA0)
    assert channel.irqs == 1 and channel.inb(STATUS) == 0
    channel.command(0xEC, device=0xB0)
    channel.outb(CONTROL, 0x02)
    channel.command(0xEC, device=0xA0)
    assert channel.irqs == 1


# ---- QEMU as the oracle -----------------------------------------------------------------
# A port script runs twice: assembled into a guest that QEMU boots (the runtime prints
# what each recorded IN returned), and against pvtool's devices on a port bus. Scripts
# poll BSY as drivers do (QEMU completes reads and writes asynchronously) and record
# only what QEMU makes deterministic (no timer state: IRR bit 0 is masked off).
#   ("out", port, byte)            ("in" | "inw" | "inl", port[, and-mask]): recorded
#   ("outw", port, word, count)    ("skipw", port, count): words read and dropped
#   ("wait", port, mask): read the byte port until no bit of MASK is set

READ_SIZES = {"in": (1, "%al"), "inw": (2, "%ax"), "inl": (4, "%eax")}


def script_asm(ops: list[tuple]) -> str:
    """The guest's test_main for a port script."""
    lines = ['    .include "macros.inc"', "    .globl test_main", "test_main:"]
    for op, port, *args in ops:
        lines.append(f"    mov ${port:#x}, %dx")
        if op == "out":
            lines += [f"    mov ${args[0]:#x}, %al", "    out %al, %dx"]
        elif op in READ_SIZES:
            lines += ["    xor %eax, %eax", f"    in %dx, {READ_SIZES[op][1]}"]
            lines += [f"    and ${args[0]:#x}, %eax"] if args else []
            lines.append("    REC %eax")
        elif op == "outw":
            lines += [f"    mov ${args[1]}, %ecx", f"    mov ${args[0]:#x}, %ax",
                      "1:  out %ax, %dx", "    loop 1b"]
        elif op == "skipw":
            lines += [f"    mov ${args[0]}, %ecx", "1:  in %dx, %ax", "    loop 1b"]
        elif op == "wait":
            lines += ["1:  in %dx, %al", f"    test ${args[0]:#x}, %al", "    jnz 1b"]
    return "\n".join([*lines, "    xor %eax, %eax", "    ret", ""])


def script_run(bus: PortBus, ops: list[tuple]) -> list[int]:
    """The same script against pvtool's devices: what each recorded IN returned."""
    records = []
    for op, port, *args in ops:
        if op == "out":
            bus.write(port, 1, args[0])
        elif op in READ_SIZES:
            value = bus.read(port, READ_SIZES[op][0])
            records.append(value & args[0] if args else value)
        elif op == "outw":
            for _ in range(args[1]):
                bus.write(port, 2, args[0])
        elif op == "skipw":
            for _ in range(args[0]):
                bus.read(port, 2)
        elif op == "wait":
            assert not bus.read(port, 1) & args[0], "BSY never shows on pvtool's disk"
    return records


def qemu_records(build, ops: list[tuple], *extra_args: str, disk=None) -> list[int]:
    """What QEMU's guest recorded (skipped without QEMU or binutils, failed in CI)."""
    guest = build(script_asm(ops))
    result = run_qemu(guest.elf, disk=disk, timeout=30, extra_args=extra_args)
    assert result.guest_code == 0, result.stdout
    return [int(line, 16) for line in result.stdout.split()]


def ata_command(command: int, lba: int = 0, count: int = 1) -> list[tuple]:
    return [("out", COUNT, count), ("out", LBA_LOW, lba & 0xFF),
            ("out", LBA_MID, lba >> 8 & 0xFF), ("out", LBA_HIGH, lba >> 16 & 0xFF),
            ("out", DEVICE, MASTER_LBA), ("out", STATUS, command), ("wait", STATUS, BSY)]


TASK_FILE = [("in", p) for p in (STATUS, ERROR, COUNT, LBA_LOW, LBA_MID, LBA_HIGH, DEVICE)]

# SRST, nIEN. QEMU performs the reset later, in a bottom half on its main loop, and until
# then keeps both devices BSY and drops command-block writes. The wait therefore has to
# poll device 0: SeaBIOS hands over with device 1 selected, and QEMU's absent device 1
# reads status 0 at once. That ends the wait early and drops the select write, so the
# task file would be read from device 1 (all zeros, or its 01 01 FF FF signature) under
# host load. So device 0 is selected while nothing is busy yet.
SOFTWARE_RESET = [("out", DEVICE, 0xA0), ("out", CONTROL, 0x06), ("out", CONTROL, 0x02),
                  ("wait", STATUS, BSY)]

REGISTER_SCRIPT = [
    *SOFTWARE_RESET,
    ("out", DEVICE, 0xA0), *TASK_FILE,
    ("out", DEVICE, MASTER_LBA), ("out", STATUS, 0xEC), ("wait", STATUS, BSY),
    ("in", STATUS), ("skipw", DATA, 256), ("in", STATUS),
    *ata_command(0x20, lba=3, count=2),
    ("in", STATUS), ("in", COUNT), ("in", LBA_LOW),
    ("inw", DATA), ("skipw", DATA, 254), ("inw", DATA),
    ("wait", STATUS, BSY), ("in", STATUS), ("in", DATA), ("skipw", DATA, 253),
    ("inl", DATA), ("wait", STATUS, BSY), *TASK_FILE,
    *ata_command(0x30, lba=7), ("in", STATUS), ("outw", DATA, 0xBEEF, 256),
    ("wait", STATUS, BSY), ("in", STATUS),
    *ata_command(0x20, lba=7), ("inw", DATA), ("skipw", DATA, 255), ("in", STATUS),
    *ata_command(0xE7), ("in", STATUS),
    *ata_command(0x50), ("in", STATUS), ("in", ERROR),  # FORMAT TRACK: not supported
    *ata_command(0x20, lba=SECTORS), ("in", STATUS),  # Error: QEMU ABRT, ATA-6 IDNF
    ("out", DEVICE, SLAVE_LBA), ("in", STATUS), ("in", CONTROL), ("in", ERROR),
    ("in", DEVICE), ("out", DEVICE, MASTER_LBA), ("in", STATUS),
]

PIC_INIT = [
    # Linux's init_8259A, then only the cascade and IRQ14 unmasked.
    ("out", 0x21, 0xFF), ("out", 0xA1, 0xFF),
    ("out", 0x20, 0x11), ("out", 0x21, 0x20), ("out", 0x21, 0x04), ("out", 0x21, 0x01),
    ("out", 0xA0, 0x11), ("out", 0xA1, 0x28), ("out", 0xA1, 0x02), ("out", 0xA1, 0x01),
    ("out", 0x21, 0xFB), ("out", 0xA1, 0xBF), ("in", 0x21), ("in", 0xA1),
]

IRQ_SCRIPT = [
    *PIC_INIT,
    ("out", CONTROL, 0x00), ("out", DEVICE, MASTER_LBA), ("out", STATUS, 0xEC),
    ("in", 0xA0), ("in", 0x20, 0xFE),  # IRR: IRQ14 on the slave, IR2 on the master
    ("out", 0x20, 0x0C), ("in", 0x20), ("out", 0xA0, 0x0C), ("in", 0xA0),  # polled INTA
    ("out", 0x20, 0x0B), ("in", 0x20), ("out", 0xA0, 0x0B), ("in", 0xA0),  # ISR
    ("out", 0x20, 0x0C), ("in", 0x20),  # IR2 in service: nothing to poll
    ("out", 0xA0, 0x20), ("out", 0x20, 0x20),  # EOI, slave first
    ("in", 0x20), ("in", 0xA0), ("out", 0x20, 0x0A), ("out", 0xA0, 0x0A),
    ("in", STATUS), ("skipw", DATA, 256), ("in", 0xA0),
    ("out", CONTROL, 0x02), ("out", STATUS, 0xEC), ("in", 0xA0),  # nIEN: no IRQ
    ("in", STATUS), ("skipw", DATA, 256),
]


@pytest.mark.parametrize("script", [REGISTER_SCRIPT, IRQ_SCRIPT], ids=["registers", "irq14"])
def test_qemu_sees_the_same_registers(build, image, script):
    judge = qemu_records(build, script, disk=image)
    image.write_bytes(b"".join(pattern(s) for s in range(SECTORS)))  # QEMU wrote to it
    with DiskImage.open(image, snapshot=True) as disk:
        ours = script_run(Channel(disk, Pic8259Pair()).bus, script)
    assert ours == judge


def test_qemu_sees_the_same_empty_channel(build):
    script = [*PIC_INIT, *TASK_FILE, ("in", CONTROL), ("inw", DATA),
              ("out", CONTROL, 0x00), ("out", DEVICE, 0xA0), ("out", STATUS, 0xEC),
              ("in", 0xA0), *TASK_FILE, ("out", DEVICE, SLAVE_LBA), *TASK_FILE]
    assert script_run(Channel(None, Pic8259Pair()).bus, script) == qemu_records(build, script)


# ---- a second device on the channel, and the secondary channel -----------------------

@pytest.fixture
def slave_disk(tmp_path):
    path = tmp_path / "slave.img"
    path.write_bytes(b"".join(pattern(s + 100) for s in range(SECTORS)))
    with DiskImage.open(path, snapshot=False) as disk:
        yield disk


def test_the_slave_answers_when_selected_and_reads_its_own_disk(disk, slave_disk):
    channel = Channel(disk, slave=slave_disk)
    channel.outb(DEVICE, SLAVE_LBA)
    assert channel.inb(STATUS) == READY  # xv6's probe for disk 1 finds it
    channel.command(0x20, lba=5, device=SLAVE_LBA)
    assert channel.inb(STATUS) == READY | DRQ
    assert channel.read_words() == pattern(105)
    channel.command(0x20, lba=5)
    assert channel.read_words() == pattern(5)
    assert channel.irqs == 2


def test_each_device_keeps_its_own_task_file(disk, slave_disk):
    """Writes reach both devices' registers; a command moves only its own (QEMU,
    pcprobe's "ide 1f0.1" line)."""
    channel = Channel(disk, slave=slave_disk)
    channel.command(0x20, lba=3)
    channel.read_words()
    assert [channel.inb(port) for port in (COUNT, LBA_LOW)] == [0, 4]
    channel.outb(DEVICE, SLAVE_LBA)
    assert [channel.inb(port) for port in (COUNT, LBA_LOW)] == [1, 3]


def test_beside_a_slave_an_absent_device_0_aborts_every_command(slave_disk):
    """QEMU's absent master beside a slave: readable, and it aborts (pcprobe)."""
    channel = Channel(None, slave=slave_disk)
    channel.outb(DEVICE, SLAVE_LBA)
    assert channel.inb(STATUS) == READY
    channel.command(0xEC, device=MASTER_LBA)
    assert channel.inb(STATUS) == DRDY | ERR and channel.inb(ERROR) == ABRT
    assert channel.irqs == 1


def test_the_empty_cdrom_aborts_with_the_packet_signature():
    channel = Channel(EmptyCdrom())
    assert channel.inb(STATUS) == READY
    channel.command(0xEC)
    assert channel.inb(STATUS) == DRDY | ERR and channel.inb(ERROR) == ABRT
    assert [channel.inb(port) for port in (COUNT, LBA_LOW, LBA_MID, LBA_HIGH)] == [
        1, 1, 0x14, 0xEB]
    assert channel.irqs == 1


def test_the_pc_has_a_secondary_channel_on_irq_15(image):
    from pvtool.machine.pc import Machine

    with DiskImage.open(image, snapshot=False) as disk:
        machine = Machine(ram_size=16 << 20, output=lambda data: None,
                          disks=(None, None, disk))
        primary, secondary = machine.ata
        assert primary.drives == (None, None) and secondary.drives == (disk, None)
        machine.ports.write(0x3F6 - 0x80, 1, 0)  # 0x376: interrupts on
        for port, value in ((0x172, 1), (0x173, 7), (0x174, 0), (0x175, 0), (0x176, 0xE0),
                            (0x177, 0x20)):
            machine.ports.write(port, 1, value)
        assert machine.pic.slave.irr & 0x80  # IRQ 15: the slave 8259's line 7
        assert machine.ports.read(0x177, 1) == READY | DRQ
        data = b"".join(machine.ports.read(0x170, 2).to_bytes(2, "little")
                        for _ in range(256))
        assert data == pattern(7)
