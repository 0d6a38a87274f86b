// Mutual exclusion. minikern runs on one CPU, so what a lock really does is turn
// interrupts off (pushcli) for as long as it is held; the xchg loop is there so the
// code reads, and would work, as on a multiprocessor.
#ifndef MINIKERN_SPINLOCK_H
#define MINIKERN_SPINLOCK_H

#include "types.h"

struct spinlock {
  uint locked;
  const char *name;  // for panics
};

#endif
