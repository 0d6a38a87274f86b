// Processes and scheduling, after xv6's proc.c: minikern's, with 64-bit kernel
// stacks and trap frames. There is no fork: the kernel
// spawns every process at boot from a program linked into the image, and the
// scheduler returns once they have all exited.
//
// ptable.lock guards every process's state. A process gives up the CPU only by
// calling sched() with ptable.lock held, and the scheduler releases it; the
// scheduler hands it to the next process the same way.

#include "types.h"
#include "mmu.h"
#include "x86.h"
#include "defs.h"
#include "memlayout.h"
#include "param.h"
#include "proc.h"
#include "spinlock.h"
#include "arch.h"

struct cpu cpu;

static struct {
  struct spinlock lock;
  struct proc proc[NPROC];
} ptable;

static int nextpid = 1;

void forkret(void);

void
procinit(void)
{
  initlock(&ptable.lock, "ptable");
}

// The running process, or 0. Interrupts are off while cpu.proc is read, so the
// answer cannot change halfway.
struct proc *
myproc(void)
{
  struct proc *p;

  pushcli();
  p = cpu.proc;
  popcli();
  return p;
}

struct proc *
findproc(int pid)
{
  struct proc *p;

  for (p = ptable.proc; p < &ptable.proc[NPROC]; p++)
    if (p->state != UNUSED && p->pid == pid)
      return p;
  panic("findproc");
}

// Take an UNUSED slot and give it a kernel stack laid out so that the first
// swtch() to it "returns" into forkret, and forkret into trapret:
//
//   top:  struct trapframe    <- p->tf, filled in by spawn
//         address of trapret
//         struct context      <- p->context, rip = forkret
static struct proc *
allocproc(void)
{
  struct proc *p;
  char *sp;

  acquire(&ptable.lock);
  for (p = ptable.proc; p < &ptable.proc[NPROC]; p++)
    if (p->state == UNUSED)
      break;
  if (p == &ptable.proc[NPROC]) {
    release(&ptable.lock);
    return 0;
  }
  memset(p, 0, sizeof(*p));
  p->state = EMBRYO;
  p->pid = nextpid++;
  release(&ptable.lock);

  if ((p->kstack = kalloc()) == 0) {
    p->state = UNUSED;
    return 0;
  }
  sp = p->kstack + KSTACKSIZE;
  sp -= sizeof(*p->tf);
  p->tf = (struct trapframe *)sp;
  sp -= sizeof(uint64);
  *(uint64 *)sp = (uint64)trapret;
  sp -= sizeof(*p->context);
  p->context = (struct context *)sp;
  memset(p->context, 0, sizeof(*p->context));
  p->context->rip = (uint64)forkret;
  return p;
}

// Start entry in ring 3, in a new address space with a stack of its own, and
// interrupts on. Its code is already mapped: it is in the image (kernel.ld).
int
spawn(const char *name, void (*entry)(void))
{
  struct proc *p;
  char *stack;

  if ((p = allocproc()) == 0)
    return -1;
  if ((p->pgdir = setupuvm()) == 0 || (stack = allocustack(p->pgdir)) == 0)
    panic("spawn: out of memory");

  // Should entry return, it returns to address 0, which no one maps, and faults.
  // The stack is as a call leaves it: RSP + 8 a multiple of 16 (SysV ABI).
  *(uint64 *)(stack + PGSIZE - 8) = 0;

  memset(p->tf, 0, sizeof(*p->tf));
  p->tf->cs = UCS;
  p->tf->ss = UDS;
  p->tf->rflags = FL_IF;
  p->tf->rsp = USTACKTOP - 8;
  p->tf->rip = (uint64)entry;
  safestrcpy(p->name, name, sizeof(p->name));

  acquire(&ptable.lock);
  p->state = RUNNABLE;
  release(&ptable.lock);
  return p->pid;
}

// A process's first scheduling lands here, still holding ptable.lock from the
// scheduler; it returns to trapret and from there to ring 3.
void
forkret(void)
{
  release(&ptable.lock);
}

// Free what a process that exited still holds. Its address space is not the one
// in CR3 (the scheduler runs in the kernel's) and its kernel stack is not in use.
static void
reap(struct proc *p)
{
  freevm(p->pgdir);
  p->pgdir = 0;
  kfree(p->kstack);
  p->kstack = 0;
}

static int
nrunnable(void)
{
  struct proc *p;
  int n = 0;

  for (p = ptable.proc; p < &ptable.proc[NPROC]; p++)
    if (p->state == RUNNABLE)
      n++;
  return n;
}

// Nothing to run: halt until an interrupt (the clock, at the latest) comes. The
// check is made with interrupts off, and safe_halt turns them on only as it halts,
// so a wakeup cannot slip in between and leave us halted with work to do.
static void
idle(void)
{
  int runnable;

  cli();
  acquire(&ptable.lock);
  runnable = nrunnable();
  release(&ptable.lock);
  if (runnable)
    sti();
  else
    safe_halt();
}

// Run the processes round robin, each in its own address space, until none is
// left. The scheduler runs on the boot stack, in the kernel's address space.
void
scheduler(void)
{
  struct proc *p;
  int alive;

  for (;;) {
    acquire(&ptable.lock);
    alive = 0;
    for (p = ptable.proc; p < &ptable.proc[NPROC]; p++) {
      if (p->state == RUNNABLE) {
        cpu.proc = p;
        switchuvm(p);
        p->state = RUNNING;
        swtch(&cpu.scheduler, p->context);
        switchkvm();
        cpu.proc = 0;
      }
      if (p->state == ZOMBIE && p->pgdir)
        reap(p);
      if (p->state == RUNNABLE || p->state == SLEEPING)
        alive++;
    }
    release(&ptable.lock);
    if (alive == 0)
      return;
    idle();
  }
}

// Switch to the scheduler. The caller holds ptable.lock and only it, and has
// already changed its state.
static void
sched(void)
{
  struct proc *p = myproc();
  int intena;

  if (!holding(&ptable.lock))
    panic("sched ptable.lock");
  if (cpu.ncli != 1)
    panic("sched locks");
  if (p->state == RUNNING)
    panic("sched running");
  if (readeflags() & FL_IF)
    panic("sched interruptible");
  intena = cpu.intena;
  swtch(&p->context, cpu.scheduler);
  cpu.intena = intena;
}

void
exitproc(int status)
{
  struct proc *p = myproc();

  acquire(&ptable.lock);
  p->xstate = status;
  p->state = ZOMBIE;
  sched();
  panic("zombie exit");
}

void
yieldcpu(void)
{
  acquire(&ptable.lock);
  myproc()->state = RUNNABLE;
  sched();
  release(&ptable.lock);
}

// Atomically release lk and sleep on chan; reacquire lk when woken. Holding
// ptable.lock from before lk is released until the process is asleep means no
// wakeup (which takes ptable.lock) can be missed.
void
sleepon(void *chan, struct spinlock *lk)
{
  struct proc *p = myproc();

  if (lk != &ptable.lock) {
    acquire(&ptable.lock);
    release(lk);
  }
  p->chan = chan;
  p->state = SLEEPING;
  sched();
  p->chan = 0;
  if (lk != &ptable.lock) {
    release(&ptable.lock);
    acquire(lk);
  }
}

void
wakeup(void *chan)
{
  struct proc *p;

  acquire(&ptable.lock);
  for (p = ptable.proc; p < &ptable.proc[NPROC]; p++)
    if (p->state == SLEEPING && p->chan == chan)
      p->state = RUNNABLE;
  release(&ptable.lock);
}
