// Functions shared between hello's files.
#ifndef HELLO_DEFS_H
#define HELLO_DEFS_H

#include "types.h"

// trap.c
uint trapcount(int trapno);

// vm.c
extern pde_t *kpgdir;
void kvminit(void);

#endif
