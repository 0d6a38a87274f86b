// The small library every guest links (guests/lib): a polled 16550 console, a
// printf for it, and the way out through QEMU's isa-debug-exit device.
#ifndef GUESTS_LIB_H
#define GUESTS_LIB_H

// uart.c
void uartinit(void);
void uartputc(int c);

// printf.c: %d, %u, %x, %s, %c and %% only; no widths.
void cprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// exit.c: QEMU exits with status (code << 1) | 1; without the device, halt forever.
void debug_exit(int code) __attribute__((noreturn));

#endif
