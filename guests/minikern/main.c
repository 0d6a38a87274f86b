// minikern: a small kernel in xv6's manner. It sets up segments, paging, the
// interrupt controllers, the timer and a disk, tests the instructions a
// deprivileged kernel gets wrong, then runs four user programs in ring 3 with
// preemptive round-robin scheduling, and reports.
//
// The output must be the same bytes on every run, on any host, on a real PC or
// QEMU (ring 0) and under pvtool (ring 1, other boot stack, privileged instructions
// rewritten). So it never shows selectors, raw EFLAGS or control registers, kernel
// or stack addresses, or anything that depends on when timer interrupts arrive;
// processes write into their own logs, which are printed in pid order after all
// of them have exited (see sys_write). Only the boot count depends on the disk.

#include "types.h"
#include "mmu.h"
#include "multiboot.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"
#include "memlayout.h"
#include "proc.h"

// What the intruder program tries to overwrite.
#define CANARY 0xC0FFEE42
uint kcanary = CANARY;

// The user programs and what each must do for the boot to pass.
struct program {
  const char *name;
  void (*main)(void);
  int xstate;        // expected exit status; -1: must be killed
  int mustpreempt;   // compute-bound: the timer must have taken the CPU from it
};

static const struct program programs[] = {
  { "primes",   primes,   0,  1 },
  { "chatty",   chatty,   0,  0 },
  { "mapper",   mapper,   0,  0 },
  { "intruder", intruder, -1, 0 },
};

void
panic(const char *why)
{
  cli();
  cprintf("panic: %s\n", why);
  debug_exit(1);
}

// The kernel maps and allocates memory up to PHYSTOP: the machine must have it.
static int
enough_memory(struct multiboot_info *mbi)
{
  if (!(mbi->flags & MULTIBOOT_INFO_MEMORY))
    return 0;
  return mbi->mem_upper >= (PHYSTOP - 0x100000) / 1024;
}

static const char *
cmdline(struct multiboot_info *mbi)
{
  return (mbi->flags & MULTIBOOT_INFO_CMDLINE) ? mbi->cmdline : "";
}

// Interrupts go on for good here: wait for a few ticks.
static int
timer_ticks(void)
{
  uint t0 = readticks();

  sti();
  while (readticks() - t0 < 3)
    hlt();
  return 1;
}

static void
report(struct proc *p, const struct program *prog)
{
  int i, start, passed;

  for (start = i = 0; i < p->loglen; i++) {
    if (p->log[i] != '\n')
      continue;
    cprintf("pid %d %s | ", p->pid, p->name);
    for (; start <= i; start++)
      uartputc(p->log[start]);
  }
  if (start < p->loglen || p->logfull)
    cprintf("pid %d %s | (output cut short)\n", p->pid, p->name);

  passed = check(p->xstate == prog->xstate);
  if (p->xstate == -1)
    cprintf("pid %d %s: killed", p->pid, p->name);
  else
    cprintf("pid %d %s: exit %d", p->pid, p->name, p->xstate);
  if (prog->mustpreempt) {
    passed &= check(p->preempts > 0);
    cprintf(", preempted: %s", p->preempts > 0 ? "yes" : "no");
  }
  cprintf(" %s\n", verdict(passed));
}

// Start every program, schedule until all have exited, then print what each wrote
// and how it ended, in pid order, and check the kernel came through intact.
static void
runprograms(void)
{
  int pids[NELEM(programs)];
  int i, nfree;

  nfree = kfreecount();
  cprintf("proc: starting");
  for (i = 0; i < (int)NELEM(programs); i++) {
    pids[i] = spawn(programs[i].name, programs[i].main);
    if (pids[i] < 0)
      panic("spawn");
    cprintf(" %s", programs[i].name);
  }
  cprintf("\n");

  scheduler();

  cprintf("proc: all %d processes exited; their output, in pid order:\n",
          (int)NELEM(programs));
  for (i = 0; i < (int)NELEM(programs); i++)
    report(findproc(pids[i]), &programs[i]);
  cprintf("kernel: memory the intruder wrote to is unchanged %s\n",
          verdict(check(kcanary == CANARY)));
  cprintf("kernel: every page the processes used was freed %s\n",
          verdict(check(kfreecount() == nfree)));
}

void
main(uint magic, struct multiboot_info *mbi)
{
  uartinit();
  cprintf("minikern: multiboot handoff, 8 MiB of memory %s\n",
          verdict(check(magic == MULTIBOOT_BOOTLOADER_MAGIC) &
                  check(enough_memory(mbi))));
  diskbenchinit(cmdline(mbi));

  seginit(&cpu.ts);
  cprintf("gdt: ring 0 and ring 3 code and data segments, tss loaded\n");
  kinit();
  kvminit();
  cprintf("paging: kernel mapped with 4 KiB pages, program text shared with ring 3 %s\n",
          verdict(check(rcr0() & CR0_PG)));
  cprintf("pic: 8259 pair remapped to vectors 32-47, all lines masked %s\n",
          verdict(picinit()));
  tvinit(T_SYSCALL, 1);  // system calls from ring 3, with interrupts on
  idtinit();
  cprintf("idt: exceptions, irqs 32-47, system call gate int 0x80 for ring 3\n");

  selftests();

  timerinit();
  cprintf("timer: 8254 channel 0 at %d Hz, interrupts arriving %s\n", HZ,
          verdict(check(timer_ticks())));

  if (diskbench())
    checkexit("minikern");
  check(bootcount());

  procinit();
  runprograms();
  checkexit("minikern");
}
