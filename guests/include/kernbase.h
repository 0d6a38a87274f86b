// Addresses of a kernel linked at KERNBASE + its physical address (highhalf, hhpse),
// as xv6's memlayout.h has them; the includer defines KERNBASE first.
#ifndef GUESTS_KERNBASE_H
#define GUESTS_KERNBASE_H

#ifndef __ASSEMBLER__
#define V2P(a) ((uint)(a) - KERNBASE)
#define P2V(a) ((void *)((uint)(a) + KERNBASE))
#endif
#define V2P_WO(x) ((x) - KERNBASE)

#endif
