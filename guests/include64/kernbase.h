// Where a 64-bit kernel is linked: in the top 2 GiB of the address space, as Linux
// is (-mcmodel=kernel: every symbol is a sign-extended 32-bit constant). The image
// is loaded at physical KERNBASE + its link address, and the kernel reaches all the
// memory it manages at KERNBASE + the physical address.
#ifndef GUESTS_KERNBASE_H
#define GUESTS_KERNBASE_H

#define KERNBASE 0xFFFFFFFF80000000

#ifndef __ASSEMBLER__
#define V2P(a) ((uint64)(a) - KERNBASE)
#define P2V(a) ((void *)((uint64)(a) + KERNBASE))
#endif

#endif
