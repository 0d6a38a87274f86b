// minikern's limits.
#ifndef MINIKERN_PARAM_H
#define MINIKERN_PARAM_H

#define NPROC        8     // process table slots
#define KSTACKSIZE   4096  // each process's kernel stack
#define LOGSIZE      1024  // each process's console log (see sys_write)
#define MAXMAPPED    64    // pages one process may hold through map()
#define HZ           100   // timer interrupts per second

#endif
