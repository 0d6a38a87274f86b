// nanobench64: guests/nanobench for x86-64, the same operations measured the same
// way and reported in the same lines (guests/nanobench/nanobench.h and measure.c,
// compiled for 64 bits; guests/nanobench/main.c says what the cycles count). The
// kernel is a 64-bit one in Linux's shape: linked in the top 2 GiB, entered in long
// mode (guests/lib64/entry.S), system calls by syscall and sysretq with swapgs, a
// 4-level page table per address space.

#include "types.h"
#include "mmu.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "multiboot.h"
#include "kernbase.h"
#include "nanobench.h"
#include "percpu.h"

// The lower half, where ring 3 runs: one page table covers it all.
#define LOWBASE    0x400000UL  // the 2 MiB that pt_low maps
#define UTEXT      LOWBASE               // userloop's pages, mapped for ring 3
#define USTACKTOP  (LOWBASE + 3 * PGSIZE)  // the user stack: one page below it
#define SPAREVA    (LOWBASE + 0x1FE000)  // the page the page-table benchmark remaps
#define PFVA       (LOWBASE + 0x1FF000)  // the page the page-fault benchmark maps on demand
#define KMAPSIZE   (4UL << 20)  // the kernel's map: the first 4 MiB at KERNBASE
#define STACKSIZE  8192

#define SYSRET_BASE ((SEG_UDATA - 1) << 3)  // sysretq: SS = base + 8, CS = base + 16

static pde_t pml4[2][NPTENTRIES] __attribute__((aligned(PGSIZE)));
static pde_t pdpt_low[NPTENTRIES] __attribute__((aligned(PGSIZE)));
static pde_t pdpt_high[NPTENTRIES] __attribute__((aligned(PGSIZE)));
static pde_t pd_low[NPTENTRIES] __attribute__((aligned(PGSIZE)));
static pde_t pd_high[NPTENTRIES] __attribute__((aligned(PGSIZE)));
static pte_t pt_low[NPTENTRIES] __attribute__((aligned(PGSIZE)));
static pte_t pt_high[KMAPSIZE / PGSIZE] __attribute__((aligned(PGSIZE)));
static char spare[2][PGSIZE] __attribute__((aligned(PGSIZE)));
static char ustack[PGSIZE] __attribute__((aligned(PGSIZE)));
static char stacks[2][STACKSIZE] __attribute__((aligned(16)));
static struct taskstate ts;

struct cpulocal {
  uint64 kstack;  // the top of the system-call stack
  uint64 ustack;  // the user's stack pointer while syscall.S saves it
} cpulocal;

static struct context *mainctx, *otherctx, *deadctx;
static uint64 tsc_end;
static int faults;

extern char userloop[];  // syscall.S
void syscallentry(void);

// Two address spaces with the same mapping. The kernel's half: the first 4 MiB at
// KERNBASE, ring 0 only. The lower half: userloop's two pages and a stack for ring
// 3, and the pages the benchmarks remap, PFVA mapped on demand.
static void
vminit(void)
{
  uint64 i, text = V2P(PGROUNDDOWN(userloop));

  for (i = 0; i < KMAPSIZE / PGSIZE; i++)
    pt_high[i] = (i * PGSIZE) | PTE_P | PTE_W;
  for (i = 0; i < KMAPSIZE / PGSIZE / NPTENTRIES; i++)
    pd_high[i] = V2P(&pt_high[i * NPTENTRIES]) | PTE_P | PTE_W | PTE_U;
  pdpt_high[PX(2, KERNBASE)] = V2P(pd_high) | PTE_P | PTE_W | PTE_U;

  pt_low[PX(0, UTEXT)] = text | PTE_P | PTE_U;
  pt_low[PX(0, UTEXT + PGSIZE)] = (text + PGSIZE) | PTE_P | PTE_U;
  pt_low[PX(0, USTACKTOP - PGSIZE)] = V2P(ustack) | PTE_P | PTE_W | PTE_U;
  pt_low[PX(0, SPAREVA)] = V2P(spare[0]) | PTE_P | PTE_W;
  pd_low[PX(1, LOWBASE)] = V2P(pt_low) | PTE_P | PTE_W | PTE_U;
  pdpt_low[PX(2, LOWBASE)] = V2P(pd_low) | PTE_P | PTE_W | PTE_U;

  for (i = 0; i < 2; i++) {
    pml4[i][PX(3, LOWBASE)] = V2P(pdpt_low) | PTE_P | PTE_W | PTE_U;
    pml4[i][PX(3, KERNBASE)] = V2P(pdpt_high) | PTE_P | PTE_W | PTE_U;
  }
  lcr3(V2P(pml4[0]));
}

// System calls by syscall (EFER.SCE), entering at syscallentry with interrupts,
// single-stepping and DF off; the kernel's GS base is its per-CPU block, ring 3's 0.
static void
syscallinit(void)
{
  cpulocal.kstack = (uint64)stacks[1] + STACKSIZE;
  wrmsr(MSR_STAR, (uint64)SYSRET_BASE << 48 | (uint64)KCS << 32);
  wrmsr(MSR_LSTAR, (uint64)syscallentry);
  wrmsr(MSR_FMASK, FL_IF | FL_TF | FL_DF);
  wrmsr(MSR_GS_BASE, (uint64)&cpulocal);
  wrmsr(MSR_KERNEL_GS_BASE, 0);
  wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
}

// syscall.S's C half. The last call ends the benchmark: it never returns.
void
sysc(uint64 number)
{
  if (number == SYS_DONE) {
    tsc_end = rdtsc();
    swtch(&deadctx, mainctx);
  }
}

void
trap(struct trapframe *tf)
{
  if (tf->trapno == T_PGFLT && rcr2() == PFVA) {
    faults++;
    pt_low[PX(0, PFVA)] = V2P(spare[1]) | PTE_P | PTE_W;
    return;
  }
  cprintf("nanobench: unexpected trap %d at 0x%x\n", (int)tf->trapno, (uint)tf->rip);
  debug_exit(1);
}

// A context ready for swtch to start fn on the stack that ends at top (16-byte
// aligned): fn finds its return address where the SysV ABI puts it.
static struct context *
newctx(char *top, void (*fn)(void))
{
  uint64 *sp = (uint64 *)top;

  *--sp = 0;             // fn's return address: fn never returns
  *--sp = (uint64)fn;    // where swtch's ret goes
  sp -= 6;               // r15, r14, r13, r12, rbx, rbp
  return (struct context *)sp;
}

// Enter ring 3 at userloop's user address, on the user stack, interrupts on, as a
// kernel starts a process: an iretq with a ring-3 frame, the user's GS base in.
static void
enteruser(void)
{
  uint64 rip = UTEXT + ((uint64)userloop & (PGSIZE - 1));

  asm volatile("pushq %0\n pushq %1\n pushq $0x202\n pushq %2\n pushq %3\n"
               "swapgs\n iretq"
               : : "i" (UDS), "r" (USTACKTOP), "i" (UCS), "r" (rip),
                   "b" (count[OP_SYSCALL])  // userloop's count
               : "memory");
}

// The other process of the context-switch benchmark: switch back, forever.
static void
otherproc(void)
{
  for (;;) {
    lcr3(V2P(pml4[0]));
    swtch(&otherctx, mainctx);
  }
}

static void
bench_syscall(void)
{
  uint64 t0;

  otherctx = newctx(stacks[0] + STACKSIZE, enteruser);
  t0 = rdtsc();
  swtch(&mainctx, otherctx);
  report("syscall", count[OP_SYSCALL], t0, tsc_end);
}

static void
bench_kernel(void)
{
  volatile uint *pf = (volatile uint *)PFVA;
  uint64 t0;
  int i;

  bench_cli_sti();

  t0 = rdtsc();
  for (i = 0; i < count[OP_PTE_UPDATE]; i++) {
    pt_low[PX(0, SPAREVA)] = V2P(spare[i & 1]) | PTE_P | PTE_W;
    invlpg((void *)SPAREVA);
  }
  report("pte_update", count[OP_PTE_UPDATE], t0, rdtsc());

  t0 = rdtsc();
  for (i = 0; i < count[OP_CR3_SWITCH]; i++)
    lcr3(V2P(pml4[i & 1]));
  report("cr3_switch", count[OP_CR3_SWITCH], t0, rdtsc());
  lcr3(V2P(pml4[0]));

  bench_port_write();

  t0 = rdtsc();
  for (i = 0; i < count[OP_PAGE_FAULT]; i++) {
    (void)*pf;                  // faults; the handler maps the page
    pt_low[PX(0, PFVA)] = 0;
    invlpg((void *)PFVA);
  }
  report("page_fault", faults, t0, rdtsc());
}

// Two processes, each with its own address space, switch to each other: n counts
// switches, two per round.
static void
bench_ctxswitch(void)
{
  uint64 t0;
  int i;

  otherctx = newctx(stacks[0] + STACKSIZE, otherproc);
  t0 = rdtsc();
  for (i = 0; i < count[OP_CTXSWITCH]; i++) {
    lcr3(V2P(pml4[1]));
    swtch(&mainctx, otherctx);
  }
  report("ctxswitch", 2 * count[OP_CTXSWITCH], t0, rdtsc());
}

void
main(uint64 magic, uint64 mbinfo)
{
  struct multiboot_info *info = P2V(mbinfo);  // the boot tables map low RAM there

  uartinit();
  if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
    cprintf("nanobench: not started by a Multiboot loader\n");
    debug_exit(1);
  }
  if (info->flags & MULTIBOOT_INFO_CMDLINE)
    setcounts(P2V(info->cmdline));
  outb(0x21, 0xFF);             // every 8259 line masked: no interrupt interferes
  outb(0xA1, 0xFF);
  ts.rsp0 = (uint64)stacks[1] + STACKSIZE;  // the kernel stack of traps from ring 3
  seginit(&ts);
  tvinit(0);
  idtinit();
  vminit();
  syscallinit();
  bench_syscall();
  bench_kernel();
  bench_ctxswitch();
  cprintf("nanobench: done\n");
  debug_exit(0);
}
