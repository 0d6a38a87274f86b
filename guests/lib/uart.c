// Polled driver for the 16550 UART on COM1, the console of every guest.
// Register map from the National Semiconductor PC16550D datasheet.

#include "types.h"
#include "x86.h"
#include "lib.h"

#define COM1 0x3F8

// Register offsets from COM1. With LCR.DLAB set, offsets 0 and 1 are the divisor.
#define UART_THR 0  // transmit holding register (write)
#define UART_DLL 0  // divisor latch, low byte
#define UART_IER 1  // interrupt enable
#define UART_DLM 1  // divisor latch, high byte
#define UART_FCR 2  // FIFO control (write)
#define UART_LCR 3  // line control
#define UART_MCR 4  // modem control
#define UART_LSR 5  // line status

#define LCR_8N1      0x03  // 8 data bits, no parity, 1 stop bit
#define LCR_DLAB     0x80  // divisor latch access
#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04
#define MCR_DTR      0x01
#define MCR_RTS      0x02
#define LSR_THRE     0x20  // transmit holding register empty

#define UART_CLOCK 115200  // the divisor's base rate (1.8432 MHz / 16)
#define BAUD       115200

void
uartinit(void)
{
  // This driver polls, so the UART must never raise an interrupt.
  outb(COM1 + UART_IER, 0);

  outb(COM1 + UART_LCR, LCR_DLAB);
  outb(COM1 + UART_DLL, (UART_CLOCK / BAUD) & 0xFF);
  outb(COM1 + UART_DLM, (UART_CLOCK / BAUD) >> 8);
  outb(COM1 + UART_LCR, LCR_8N1);  // also clears DLAB

  outb(COM1 + UART_FCR, FCR_ENABLE | FCR_CLEAR_RX | FCR_CLEAR_TX);
  outb(COM1 + UART_MCR, MCR_DTR | MCR_RTS);
}

void
uartputc(int c)
{
  // Wait until the transmitter can take another byte.
  while ((inb(COM1 + UART_LSR) & LSR_THRE) == 0)
    ;
  outb(COM1 + UART_THR, c);
}
