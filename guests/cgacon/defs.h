// cgacon's own functions, and the VGA and 8042 ports they share.
#ifndef CGACON_DEFS_H
#define CGACON_DEFS_H

#include "types.h"

#define CRTC_INDEX 0x3D4  // the colour CRT controller (misc output bit 0 is set)
#define CRTC_DATA  0x3D5
#define VGA_STATUS 0x3DA  // input status 1; also resets the attribute flip-flop
#define VGA_ATTR   0x3C0

#define KBC_DATA   0x60  // the 8042's output buffer (read) and input buffer (write)
#define KBC_STATUS 0x64  // status (read), controller command (write)
#define KBC_OBF    0x01  // output buffer full: a byte waits at KBC_DATA

// cga.c
extern int scrolls;
void cgainit(void);
void cgacolor(int attribute);
void cgaputc(int c);
void cgaputs(const char *s);
int cgacursor(void);
void cgacursorshape(int start, int end);
int cgacursorstart(void);

// kbd.c
void kbdintr(void);
int kbdgetc(void);
void kbdprintcodes(void);

// probe.c
void vgaprobe(void);
void screenprobe(void);
void kbcprobe(void);

#endif
