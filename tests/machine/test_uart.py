"""machine/uart.py: the 16550 at COM1, register by register (PC16550D data sheet),
then under a guest next to QEMU's own 16550."""


from pvtool.machine.stop import StopKind
from pvtool.machine.uart import Uart16550
from tests.machine.harness import assert_same_as_qemu, hex_lines, run_native

RBR_THR, IER, IIR_FCR, LCR, MCR, LSR, MSR, SCR = range(8)
LSR_DR, LSR_THRE, LSR_TEMT = 0x01, 0x20, 0x40


def uart(input_data: bytes = b""):
    sent: list[bytes] = []
    return Uart16550(sent.append, input_data), sent


def test_after_reset_the_transmitter_is_empty_and_nothing_is_pending():
    device, _ = uart()
    assert device.read(LSR, 1) == LSR_THRE | LSR_TEMT
    assert device.read(IIR_FCR, 1) == 0x01  # no interrupt pending, FIFOs off
    assert [device.read(reg, 1) for reg in (IER, LCR, MCR, SCR)] == [0, 0, 0, 0]


def test_each_thr_write_sends_one_byte_in_order():
    device, sent = uart()
    for byte in b"hi\n\x00\xff":
        device.write(RBR_THR, 1, byte)
    assert sent == [b"h", b"i", b"\n", b"\x00", b"\xff"]
    assert device.bytes_written == 5
    assert device.read(LSR, 1) & (LSR_THRE | LSR_TEMT) == LSR_THRE | LSR_TEMT


def test_dlab_turns_offsets_0_and_1_into_the_divisor_latch():
    device, sent = uart()
    device.write(LCR, 1, 0x83)  # DLAB, 8 data bits
    device.write(RBR_THR, 1, 0x03)  # DLL
    device.write(IER, 1, 0x01)  # DLM
    assert (device.read(RBR_THR, 1), device.read(IER, 1)) == (0x03, 0x01)
    assert device.divisor == 0x0103
    assert sent == []  # a DLL write transmits nothing
    assert device.read(LCR, 1) == 0x83

    device.write(LCR, 1, 0x03)
    assert device.read(IER, 1) == 0  # IER again, untouched by the DLM write
    device.write(RBR_THR, 1, ord("x"))
    assert sent == [b"x"]
    assert device.divisor == 0x0103


def test_ier_keeps_4_bits_and_mcr_5():
    device, _ = uart()
    device.write(IER, 1, 0xFF)
    device.write(MCR, 1, 0xFF)
    assert (device.read(IER, 1), device.read(MCR, 1)) == (0x0F, 0x1F)


def test_fcr_fifo_enable_shows_in_iir():
    device, _ = uart()
    device.write(IIR_FCR, 1, 0x07)
    assert device.read(IIR_FCR, 1) == 0xC1
    device.write(IIR_FCR, 1, 0x00)
    assert device.read(IIR_FCR, 1) == 0x01


def test_scratch_register_holds_a_byte():
    device, _ = uart()
    for value in (0xA5, 0x00, 0x5A):
        device.write(SCR, 1, value)
        assert device.read(SCR, 1) == value


def test_received_bytes_come_in_order_and_data_ready_follows_the_buffer():
    device, _ = uart(b"ab")
    assert device.read(LSR, 1) & LSR_DR
    assert device.read(RBR_THR, 1) == ord("a")
    assert device.read(LSR, 1) & LSR_DR
    assert device.read(RBR_THR, 1) == ord("b")
    assert not device.read(LSR, 1) & LSR_DR
    device.feed(b"c")
    assert device.read(LSR, 1) == LSR_THRE | LSR_TEMT | LSR_DR
    assert device.read(RBR_THR, 1) == ord("c")
    assert device.read(LSR, 1) == LSR_THRE | LSR_TEMT


REGISTERS_SCENARIO = """
    .include "macros.inc"
    .set COM1, 0x3f8
.macro OUTB port, val
    mov $\\port, %dx
    mov $\\val, %al
    out %al, %dx
.endm
.macro INB port
    mov $\\port, %dx
    xor %eax, %eax
    in %dx, %al
    REC %eax
.endm
    .globl test_main
test_main:
    OUTB COM1+3, 0x83           # DLAB
    OUTB COM1+0, 0x03
    OUTB COM1+1, 0x01
    INB COM1+0
    INB COM1+1
    INB COM1+3
    OUTB COM1+3, 0x03           # DLAB off, 8N1
    INB COM1+3
    OUTB COM1+1, 0xF0           # IER keeps its low 4 bits
    INB COM1+1
    INB COM1+2
    OUTB COM1+2, 0x07           # FIFOs on
    INB COM1+2
    OUTB COM1+2, 0x00
    INB COM1+2
    OUTB COM1+4, 0x0F           # DTR RTS OUT1 OUT2, no loopback
    INB COM1+4
    INB COM1+6
    OUTB COM1+7, 0xA5
    INB COM1+7
    INB COM1+5
    xor %eax, %eax
    ret
"""


def test_a_guest_sees_the_registers_qemus_16550_has(build):
    run = run_native(build(REGISTERS_SCENARIO))

    assert run.records() == [
        0x03, 0x01, 0x83,  # divisor latch and LCR with DLAB
        0x03,  # LCR
        0x00,  # IER: the high nibble does not exist
        0x01, 0xC1, 0x01,  # IIR: no interrupt; FIFOs enabled; disabled
        0x0F,  # MCR
        0xB0,  # MSR: DCD, DSR, CTS (a connected line)
        0xA5,  # scratch
        0x60,  # LSR: THRE, TEMT
    ]
    assert_same_as_qemu(run)


def test_a_word_read_of_a_byte_wide_device_covers_two_registers(build):
    run = run_native(build("""
    .include "macros.inc"
    .globl test_main
test_main:
    mov $0x3ff, %dx
    mov $0xa5, %al
    out %al, %dx
    mov $0x3fe, %dx
    xor %eax, %eax
    in %dx, %ax
    REC %eax
    xor %eax, %eax
    ret
"""))
    assert run.records() == [0xA5B0]
    assert_same_as_qemu(run)


def test_a_guest_reads_its_input_while_data_ready_is_set(build):
    # The harness's QEMU run feeds COM1 nothing, and input piped to QEMU arrives at a
    # moment the host decides, so the data sheet is the judge of this polling loop;
    # tests/e2e/test_highhalf.py compares interrupt-driven input with QEMU's.
    guest = build("""
    .include "macros.inc"
    .globl test_main
test_main:
1:  mov $0x3fd, %dx
    xor %eax, %eax
    in %dx, %al
    REC %eax
    test $1, %al
    jz 2f
    mov $0x3f8, %dx
    in %dx, %al
    call putc
    jmp 1b
2:  xor %eax, %eax
    ret
""")
    run = run_native(guest, input_data=b"ok")

    assert run.stop.kind is StopKind.GUEST_EXIT
    assert run.records() == [0x61, 0x61, 0x60]
    assert bytes(run.output) == b"ok" + hex_lines([0x61, 0x61, 0x60])
    assert run.machine.uart.bytes_written == len(run.output)


class Line:
    """The UART's interrupt line: every level it was driven to."""

    def __init__(self):
        self.levels: list[bool] = []

    def __call__(self, level: bool) -> None:
        self.levels.append(level)


def test_thr_empty_interrupt_on_enable_cleared_by_reading_iir():
    line = Line()
    device = Uart16550(lambda data: None, irq=line)
    device.write(IER, 1, 0x02)
    assert line.levels == [True] and device.read(IIR_FCR, 1) == 0x02
    assert line.levels == [True, False] and device.read(IIR_FCR, 1) == 0x01


def test_each_byte_sent_raises_thr_empty_again():
    line = Line()
    device = Uart16550(lambda data: None, irq=line)
    device.write(IER, 1, 0x02)
    device.read(IIR_FCR, 1)
    device.write(RBR_THR, 1, ord("a"))
    assert line.levels == [True, False, True]  # QEMU's edge: the I/O APIC sees it


def test_received_data_comes_before_thr_empty_until_the_input_is_read():
    line = Line()
    device = Uart16550(lambda data: None, b"xy", irq=line)
    device.write(IER, 1, 0x03)
    assert device.read(IIR_FCR, 1) == 0x04
    assert device.read(RBR_THR, 1) == ord("x") and device.read(IIR_FCR, 1) == 0x04
    assert device.read(RBR_THR, 1) == ord("y") and device.read(IIR_FCR, 1) == 0x02
    assert line.levels[-1] is False  # the THRE read cleared the last cause


def test_a_polled_console_never_touches_the_line():
    line = Line()
    device = Uart16550(lambda data: None, b"in", irq=line)
    device.write(RBR_THR, 1, ord("a"))
    device.read(RBR_THR, 1)
    assert line.levels == []
