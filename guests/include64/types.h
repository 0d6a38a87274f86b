// Fixed-size types for freestanding 64-bit guest code (LP64: long and pointers are
// 64 bits, int 32). The names of guests/include/types.h mean the same here, so the
// portable C of guests/lib and minikern's drivers compiles for either width.
#ifndef GUESTS_TYPES_H
#define GUESTS_TYPES_H

typedef unsigned int   uint;
typedef unsigned short ushort;
typedef unsigned char  uchar;
typedef unsigned long  uint64;
typedef unsigned long  uintptr;

typedef uint64 pde_t;  // an entry of any level of the 4-level tables
typedef uint64 pte_t;

#endif
