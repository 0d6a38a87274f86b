// What probeboot's entry code records, shared by entry.S (offsets) and main.c (the
// structure). Both must agree: main.c checks the offsets at compile time.
#ifndef PROBEBOOT_PROBE_H
#define PROBEBOOT_PROBE_H

#define E_EAX    0
#define E_EBX    4
#define E_ECX    8
#define E_EDX    12
#define E_ESI    16
#define E_EDI    20
#define E_EBP    24
#define E_ESP    28
#define E_EFLAGS 32
#define E_CR0    36
#define E_CR2    40
#define E_CR3    44
#define E_CR4    48
#define E_CS     52
#define E_DS     54
#define E_ES     56
#define E_FS     58
#define E_GS     60
#define E_SS     62
#define E_GDTR   64  // limit (2 bytes), base (4 bytes)
#define E_IDTR   72
#define E_LDTR   80
#define E_TR     82

#ifndef __ASSEMBLER__
#include "types.h"

struct pseudo_descriptor {
  ushort limit;
  uint base;
} __attribute__((packed));

struct entry_state {
  uint eax, ebx, ecx, edx, esi, edi, ebp, esp;
  uint eflags, cr0, cr2, cr3, cr4;
  ushort cs, ds, es, fs, gs, ss;
  struct pseudo_descriptor gdtr;
  ushort pad0;
  struct pseudo_descriptor idtr;
  ushort pad1;
  ushort ldtr, tr;
};

extern struct entry_state entry;
#endif

#endif
