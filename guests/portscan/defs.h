// portscan: what a kernel finds behind the PC's I/O ports. It reads every port of
// the ISA range and of the ranges QEMU's i440FX PC decodes above it, at byte, word
// and dword width, and prints what it read, a line per 16 ports; then it drives the
// floppy controller's detection sequence and the 8042's mouse port. Run on QEMU and
// on pvtool, every difference is a device pvtool lacks or answers wrongly.
#ifndef PORTSCAN_DEFS_H
#define PORTSCAN_DEFS_H

// scan.c: ALL adds the ranges where pvtool is known to depart from QEMU.
void scan(int all);

// vbe.c
void vbe_probe(void);

// fdc.c
void fdc_probe(void);

// aux.c
void aux_probe(void);

// irr.c: whether an ISA interrupt line has latched in its 8259's request register.
int irq_requested(int irq);

#endif
