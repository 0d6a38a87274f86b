// How a guest reports, in any mode and at either width: the checks it counts, its
// console (a polled 16550 on COM1 and a printf for it) and its way out through
// QEMU's isa-debug-exit device. guests/lib's check.c, uart.c, printf.c and exit.c,
// which every PC guest links, 32-bit (guests/include/lib.h) or 64-bit
// (guests/include64/lib.h).
#ifndef GUESTS_REPORT_H
#define GUESTS_REPORT_H

// check.c: count a check and return whether it passed; "ok" or "FAIL"; print how
// the checks went, as "GUEST: all N checks passed", and exit with 0 or 1.
int check(int passed);
const char *verdict(int passed);
void checkexit(const char *guest) __attribute__((noreturn));

// uart.c
void uartinit(void);
void uartputc(int c);

// printf.c: %d, %u, %x, %s, %c and %% only; no widths. Each character goes to
// consputc: COM1's uartputc, unless the guest defines a consputc of its own.
void consputc(int c);
void cprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// exit.c: QEMU exits with status (code << 1) | 1; without the device, halt forever.
void debug_exit(int code) __attribute__((noreturn));

#endif
