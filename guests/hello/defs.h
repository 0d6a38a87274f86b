// Functions shared between hello's files.
#ifndef HELLO_DEFS_H
#define HELLO_DEFS_H

#include "types.h"

struct trapframe;

// trap.c
void tvinit(void);
void trap(struct trapframe *tf);
uint trapcount(int trapno);

// vm.c
extern pde_t *kpgdir;
void seginit(void);
void kvminit(void);

#endif
