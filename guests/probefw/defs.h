// probefw: the firmware's tables and the PCI bus, as the guest finds them.
#ifndef PROBEFW_DEFS_H
#define PROBEFW_DEFS_H

#include "types.h"

// dump.c: fixed-width hex (cprintf has no widths), and byte sums.
void puthex(uint value, int digits);
void dump(const uchar *p, uint len);
uchar sum(const uchar *p, uint len);
int same(const void *a, const char *b, int n);
void putchars(const uchar *p, int n);
uint rd16(const uchar *p);
uint rd32(const uchar *p);

// Where the BIOS hides a table: a 16-byte-aligned signature in a range.
const uchar *scan(uint start, uint len, const char *sig, int siglen);
const uchar *scan_ebda(const char *sig, int siglen);

// mp.c, acpi.c, smbios.c, pci.c, pmtimer.c, poweroff.c
void probe_mp(void);
const uchar *probe_acpi(void);
void probe_smbios(void);
void probe_pci(void);
void probe_pmtimer(const uchar *fadt);
void poweroff(const uchar *fadt) __attribute__((noreturn));

#endif
