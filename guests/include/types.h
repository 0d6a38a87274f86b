// Fixed-size types for freestanding guest code (there is no libc to provide them).
#ifndef GUESTS_TYPES_H
#define GUESTS_TYPES_H

typedef unsigned int   uint;
typedef unsigned short ushort;
typedef unsigned char  uchar;
typedef uint           uintptr;  // an address as a number (guests/include64: 64 bits)
typedef unsigned long long uint64;  // (guests/include64: unsigned long, the same width)

typedef uint pde_t;  // page directory entry
typedef uint pte_t;  // page table entry

#endif
