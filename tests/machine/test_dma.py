"""machine/dma.py: the two 8237s and their page registers, through the port bus."""

from pvtool.machine.dma import (
    CASCADE_UNMASKED,
    DMA1_BASE,
    DMA1_PAGE_BASE,
    DMA2_BASE,
    DMA2_PAGE_BASE,
    DMA2_SHIFT,
    Dma8237,
)
from pvtool.machine.ports import PortBus


def machine_dma():
    bus = PortBus()
    dma1, dma2 = Dma8237(0), Dma8237(DMA2_SHIFT, mask=CASCADE_UNMASKED)
    dma1.register(bus, DMA1_BASE, DMA1_PAGE_BASE)
    dma2.register(bus, DMA2_BASE, DMA2_PAGE_BASE)
    return bus, dma1, dma2


def test_an_address_is_written_and_read_low_byte_then_high_through_the_flip_flop():
    bus, _, _ = machine_dma()
    bus.write(0x0C, 1, 0)  # clear the flip-flop
    bus.write(0x04, 1, 0x34)  # channel 2's address
    bus.write(0x04, 1, 0x12)
    bus.write(0x05, 1, 0xFF)  # channel 2's count
    bus.write(0x05, 1, 0x01)
    assert [bus.read(0x04, 1) for _ in range(2)] == [0x34, 0x12]
    assert [bus.read(0x05, 1) for _ in range(2)] == [0xFF, 0x01]


def test_the_current_address_takes_the_base_when_its_high_byte_is_written():
    bus, _, _ = machine_dma()
    bus.write(0x00, 1, 0x34)
    bus.write(0x0C, 1, 0)  # back to the low byte: the high byte never came
    assert [bus.read(0x00, 1) for _ in range(2)] == [0, 0]


def test_dma2_decodes_each_register_on_two_ports():
    bus, _, dma2 = machine_dma()
    bus.write(0xC5, 1, 0x78)  # 0xC4 and 0xC5: channel 5's address
    bus.write(0xC4, 1, 0x56)
    assert dma2.current[1] == 0x5678
    assert bus.read(0xD2, 1) == bus.read(0xD3, 1) == 0xFE  # channel 4 unmasked


def test_the_mask_register_follows_single_all_and_clear_writes_and_reads_back():
    bus, dma1, _ = machine_dma()
    assert bus.read(0x09, 1) == 0xFF  # QEMU's reset masks every bit
    bus.write(0x0E, 1, 0)  # clear all masks
    bus.write(0x0A, 1, 0x06)  # mask channel 2
    assert dma1.mask == 0x04
    bus.write(0x0A, 1, 0x02)
    bus.write(0x0F, 1, 0x0B)
    assert bus.read(0x09, 1) == 0x0B
    bus.write(0x0D, 1, 0)  # master clear
    assert bus.read(0x09, 1) == 0xFF


def test_a_status_read_clears_the_terminal_counts_and_keeps_the_requests():
    bus, dma1, _ = machine_dma()
    dma1.status = 0x03
    bus.write(0x09, 1, 0x05)  # request channel 1, which clears its terminal count
    assert bus.read(0x08, 1) == 0x21
    assert bus.read(0x08, 1) == 0x20
    bus.write(0x09, 1, 0x01)  # and withdraw it
    assert bus.read(0x08, 1) == 0


def test_page_registers_hold_a_byte_per_channel_and_the_rest_of_the_block_floats():
    bus, dma1, dma2 = machine_dma()
    for port, value in ((0x87, 0x10), (0x83, 0x11), (0x81, 0x12), (0x82, 0x13), (0x8F, 0x14)):
        bus.write(port, 1, value)
    assert dma1.pages == [0x10, 0x11, 0x12, 0x13] and dma2.pages[0] == 0x14
    assert bus.read(0x82, 2) == 0x1113  # channels 3 and 1
    assert bus.read(0x83, 2) == 0xFF11  # a portio list: 0x84 is past its end
    assert bus.read(0x84, 1) == bus.read(0x88, 1) == 0xFF
