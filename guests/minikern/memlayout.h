// minikern's virtual address space, the same in every process.
//
//   0x00000000 - KERNLINK     unmapped (catches null pointers)
//   KERNLINK   - PHYSTOP      the kernel, identity-mapped (virtual == physical),
//                             ring 0 only, except the pages of user program text
//                             (kernel.ld's ustart..uend), which ring 3 may read
//   UMAPBASE   - UMAPTOP      pages a process asks for with map()
//   USTACKTOP - USTACKSIZE    the process's stack
//
// User programs are linked into the kernel image, so their code runs at its link
// address inside the kernel's range; everything writable a process has is its own.
#ifndef MINIKERN_MEMLAYOUT_H
#define MINIKERN_MEMLAYOUT_H

#define KERNLINK    0x00100000  // where the loader puts the image (1 MiB)
#define PHYSTOP     0x00800000  // memory the kernel maps and allocates from (8 MiB)
#define UMAPBASE    0x40000000
#define UMAPTOP     0x40400000
#define USTACKTOP   0x80000000
#define USTACKSIZE  (2 * 4096)

#endif
