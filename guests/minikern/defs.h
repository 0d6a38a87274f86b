// Functions shared between minikern's kernel files.
#ifndef MINIKERN_DEFS_H
#define MINIKERN_DEFS_H

#include "types.h"
#include "mmu.h"

struct proc;
struct spinlock;

#define NELEM(x) (sizeof(x) / sizeof((x)[0]))

// bootcount.c
int bootcount(void);

// diskbench.c
void diskbenchinit(const char *cmdline);
int diskbench(void);

// ide.c: n sectors of SECTSIZE bytes from sector lba on.
#define SECTSIZE 512
int ideinit(void);
int ideread(uint lba, void *buf, uint n);
int idewrite(uint lba, const void *buf, uint n);
int ideflush(void);

// kalloc.c
void kinit(void);
char *kalloc(void);
void kfree(char *v);
int kfreecount(void);

// main.c
extern uint kcanary;
void panic(const char *why) __attribute__((noreturn));

// picirq.c
int picinit(void);
void picenable(int irq);
void piceoi(int irq);
int picspurious(int irq);

// proc.c
void procinit(void);
int spawn(const char *name, void (*entry)(void));
struct proc *myproc(void);
struct proc *findproc(int pid);
void scheduler(void);
void exitproc(int status) __attribute__((noreturn));
void yieldcpu(void);
void sleepon(void *chan, struct spinlock *lk);
void wakeup(void *chan);

// selftest.c
void selftests(void);

// spinlock.c
void initlock(struct spinlock *lk, const char *name);
void acquire(struct spinlock *lk);
void release(struct spinlock *lk);
int holding(struct spinlock *lk);
void pushcli(void);
void popcli(void);
uint irqsave(void);
void irqrestore(uint flags);

// string.c
void *memset(void *dst, int c, uint n);
void *memmove(void *dst, const void *src, uint n);
int memcmp(const void *v1, const void *v2, uint n);
char *safestrcpy(char *s, const char *t, int n);

// sysargs.c: the architecture's registers and stack of a system call; syscall.c
// dispatches it.
struct trapframe;
int argint(int n, int *ip);
int argptr(int n, char **pp, int size);
uint sysnum(struct trapframe *tf);
void setsysret(struct trapframe *tf, int value);
void syscall(void);

// timer.c
extern struct spinlock tickslock;
extern uint ticks;
void timerinit(void);
void timerintr(void);
uint readticks(void);

// uprimes.c, uchatty.c, umapper.c, uintruder.c: the user programs, run in ring 3.
void primes(void);
void chatty(void);
void mapper(void);
void intruder(void);

// vm.c
extern pde_t *kpgdir;
void kvminit(void);
pde_t *setupuvm(void);
char *allocustack(pde_t *pgdir);
void switchuvm(struct proc *p);
void switchkvm(void);
int uvmmap(pde_t *pgdir, uint va);
int uvmunmap(pde_t *pgdir, uint va);
int uvmaccessible(pde_t *pgdir, uint va, uint len);
void freevm(pde_t *pgdir);

#endif
