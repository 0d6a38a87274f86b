// minikern64: minikern for x86-64, in the shape of a 64-bit Linux. It is linked in
// the top 2 GiB (kernbase.h) and entered in long mode (guests/lib64/entry.S); it
// builds its own 4-level page tables, a 64-bit GDT and TSS (with an interrupt stack
// for double faults) and IDT, takes system calls by syscall and returns by sysretq,
// sets up the interrupt controllers, the 8254 timer, the local APIC's timer and a
// disk, tests the instructions a deprivileged kernel gets wrong, then runs minikern's
// four user programs in ring 3 with preemptive round-robin scheduling, and reports.
//
// The output must be the same bytes on every run, on any host, on QEMU (ring 0)
// and under pvtool (ring 3 under Xen's 64-bit ABI, privileged instructions
// rewritten): as minikern, it never shows selectors, flags, control registers or
// addresses, or anything that depends on when interrupts arrive. Only the boot
// count depends on the disk.

#include "types.h"
#include "mmu.h"
#include "multiboot.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"
#include "kernbase.h"
#include "memlayout.h"
#include "proc.h"
#include "arch.h"

#define DFIST 1  // the TSS's interrupt stack for double faults (IST1)

// What the intruder program tries to overwrite.
#define CANARY 0xC0FFEE42
uint kcanary = CANARY;

static char dfstack[PGSIZE] __attribute__((aligned(16)));

// The user programs (minikern's) and what each must do for the boot to pass.
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

// The GDT and the TSS's stacks: rsp0 is set per process (vm.c's switchuvm).
static void
segments(void)
{
  cpu.ts.ist[DFIST - 1] = (uint64)dfstack + sizeof(dfstack);
  seginit(&cpu.ts);
  cprintf("gdt: 64-bit kernel and user segments, tss with an interrupt stack loaded\n");
}

// What each process wrote, line by line, and how it ended.
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
  cprintf(p->xstate == -1 ? "pid %d %s: killed" : "pid %d %s: exit %d", p->pid,
          p->name, p->xstate);
  if (prog->mustpreempt) {
    passed &= check(p->preempts > 0);
    cprintf(", preempted: %s", p->preempts > 0 ? "yes" : "no");
  }
  cprintf(" %s\n", verdict(passed));
}

// Start every program, schedule until all have exited, then report on each in
// pid order, and check the kernel came through intact.
static void
runprograms(void)
{
  int pids[NELEM(programs)];
  int i, nfree;

  nfree = kfreecount();
  cprintf("proc: starting");
  for (i = 0; i < (int)NELEM(programs); i++) {
    if ((pids[i] = spawn(programs[i].name, programs[i].main)) < 0)
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

// The 64-bit entry (entry.S's start64) calls here with the Multiboot magic and the
// physical address of the information structure, which the boot tables map at
// KERNBASE + its address as the kernel's own tables will.
void
main(uint64 magic, uint64 mbiphys)
{
  struct multiboot_info *mbi = P2V(mbiphys);

  uartinit();
  cprintf("minikern64: long mode, multiboot handoff, 8 MiB of memory %s\n",
          verdict(check(magic == MULTIBOOT_BOOTLOADER_MAGIC) &
                  check(rdmsr(MSR_EFER) & EFER_LMA) & check(enough_memory(mbi))));

  segments();
  kinit();
  kvminit();
  cprintf("paging: 4-level tables of the kernel's own, kernel in the top 2 GiB, "
          "program text shared with ring 3 %s\n",
          verdict(check(rcr0() & CR0_PG) & check(rcr4() & CR4_PAE)));
  cprintf("pic: 8259 pair remapped to vectors 32-47, all lines masked %s\n",
          verdict(picinit()));
  tvinit(DFIST);
  idtinit();
  cprintf("idt: 64-bit interrupt gates, double faults on their own stack\n");
  syscallinit();
  cprintf("syscall: entry and segments in the msrs, EFER.SCE set %s\n",
          verdict(check(rdmsr(MSR_EFER) & EFER_SCE) &
                  check(rdmsr(MSR_LSTAR) == (uint64)syscallentry)));

  selftests();

  lapicinit();
  cprintf("lapic: enabled, timer interrupts arriving %s\n",
          verdict(check(lapictimer())));
  timerinit();
  cprintf("timer: 8254 channel 0 at %d Hz, interrupts arriving %s\n", HZ,
          verdict(check(timer_ticks())));

  check(bootcount());

  procinit();
  runprograms();
  checkexit("minikern64");
}
