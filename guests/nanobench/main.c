// nanobench: the cost of each operation a kernel does often, the operations whose
// price decides how a virtualization technique performs (the Xen paper's Table 3 is
// made of such figures). Each runs N times (or as many as the command line asks:
// nanobench.h) between two rdtsc reads, and one line per operation is printed:
//
//   nanobench: <operation> n=<count> cycles=<total>
//
// cycles is the time-stamp counter's delta, saturated at 2^32 - 1. On a PC or QEMU
// (TCG) it counts the host's cycles; under pvtool it is Unicorn's rdtsc, QEMU's TCG
// helper reading the host's counter too: host time per operation, including every
// exit pvtool's Python hypervisor takes. It is a measurement, never a test verdict.
//
// The null hypercall is not measured here: an unpatched kernel has no hypercall
// page, and `pvtool bench` measures one (xen_version) from its harness.

#include "types.h"
#include "mmu.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "multiboot.h"
#include "nanobench.h"

#define PFVA       0x3FF000   // the page the page-fault benchmark maps on demand
#define SPAREVA    0x3FE000   // the page the page-table benchmark remaps
#define STACKSIZE  4096

static pde_t pgdir[2][NPDENTRIES] __attribute__((aligned(PGSIZE)));
static pte_t pgtab[NPTENTRIES] __attribute__((aligned(PGSIZE)));
static char spare[PGSIZE] __attribute__((aligned(PGSIZE)));
static char stacks[3][STACKSIZE] __attribute__((aligned(16)));
static struct taskstate ts;

static struct context *mainctx, *otherctx, *deadctx;
static uint64 tsc_end;
static int faults;

// Two address spaces with the same mapping: the first 4 MiB, identity, open to
// ring 3 (the user loop is kernel text), except PFVA, mapped on demand.
static void
vminit(void)
{
  uint i;

  for (i = 0; i < NPTENTRIES; i++)
    pgtab[i] = (i * PGSIZE) | PTE_P | PTE_W | PTE_U;
  pgtab[PTX(PFVA)] = 0;
  for (i = 0; i < 2; i++)
    pgdir[i][0] = (uint)pgtab | PTE_P | PTE_W | PTE_U;
  lcr3((uint)pgdir[0]);
  lcr0(rcr0() | CR0_PG | CR0_WP);
}

void
trap(struct trapframe *tf)
{
  if (tf->trapno == T_SYSCALL) {
    if (tf->eax == SYS_DONE) {
      tsc_end = rdtsc();
      swtch(&deadctx, mainctx);  // back to main: this trap never returns
    }
    return;
  }
  if (tf->trapno == T_PGFLT && rcr2() == PFVA) {
    faults++;
    pgtab[PTX(PFVA)] = (uint)spare | PTE_P | PTE_W;
    return;
  }
  cprintf("nanobench: unexpected trap %d at 0x%x\n", tf->trapno, tf->eip);
  debug_exit(1);
}

// A context ready for swtch to start fn on the stack that ends at top.
static struct context *
newctx(char *top, void (*fn)(void))
{
  uint *sp = (uint *)top;

  *--sp = 0;          // fn's return address: fn never returns
  *--sp = (uint)fn;   // where swtch's ret goes
  sp -= 4;            // ebp, ebx, esi, edi
  return (struct context *)sp;
}

// Ring 3: count[OP_SYSCALL] null system calls, then the one that ends the benchmark.
static void
userloop(void)
{
  int i;

  for (i = 0; i < count[OP_SYSCALL]; i++)
    asm volatile("int $0x80" : : "a" (SYS_NULL) : "memory");
  asm volatile("int $0x80" : : "a" (SYS_DONE) : "memory");
  for (;;)
    ;
}

// Enter ring 3 at userloop, on its own stack, interrupts on, as a kernel starts a
// process: an iret with a ring-3 frame.
static void
enteruser(void)
{
  asm volatile("pushl %0\n pushl %1\n pushl $0x202\n pushl %2\n pushl %3\n"
               "movw %w0, %%ax\n movw %%ax, %%ds\n movw %%ax, %%es\n iret"
               : : "r" ((SEG_UDATA << 3) | DPL_USER), "r" ((uint)stacks[1] + STACKSIZE),
                   "r" ((SEG_UCODE << 3) | DPL_USER), "r" ((uint)userloop)
               : "eax", "memory");
}

// The other process of the context-switch benchmark: switch back, forever.
static void
otherproc(void)
{
  for (;;) {
    lcr3((uint)pgdir[0]);
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
  loadds(SEG_KDATA << 3);
  loades(SEG_KDATA << 3);
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
    pgtab[PTX(SPAREVA)] = ((i & 1) ? (uint)spare : SPAREVA) | PTE_P | PTE_W;
    invlpg((void *)SPAREVA);
  }
  report("pte_update", count[OP_PTE_UPDATE], t0, rdtsc());
  pgtab[PTX(SPAREVA)] = SPAREVA | PTE_P | PTE_W | PTE_U;
  invlpg((void *)SPAREVA);

  t0 = rdtsc();
  for (i = 0; i < count[OP_CR3_SWITCH]; i++)
    lcr3((uint)pgdir[i & 1]);
  report("cr3_switch", count[OP_CR3_SWITCH], t0, rdtsc());
  lcr3((uint)pgdir[0]);

  bench_port_write();

  t0 = rdtsc();
  for (i = 0; i < count[OP_PAGE_FAULT]; i++) {
    (void)*pf;                  // faults; the handler maps the page
    pgtab[PTX(PFVA)] = 0;
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
    lcr3((uint)pgdir[1]);
    swtch(&mainctx, otherctx);
  }
  report("ctxswitch", 2 * count[OP_CTXSWITCH], t0, rdtsc());
}

void
main(uint magic, struct multiboot_info *info)
{
  uartinit();
  if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
    cprintf("nanobench: not started by a Multiboot loader\n");
    debug_exit(1);
  }
  if (info->flags & MULTIBOOT_INFO_CMDLINE)
    setcounts(info->cmdline);
  outb(0x21, 0xFF);             // every 8259 line masked: no interrupt interferes
  outb(0xA1, 0xFF);
  ts.esp0 = (uint)stacks[2] + STACKSIZE;  // the kernel stack of traps from ring 3
  seginit(&ts);
  tvinit(T_SYSCALL, 1);
  idtinit();
  vminit();
  bench_syscall();
  bench_kernel();
  bench_ctxswitch();
  cprintf("nanobench: done\n");
  debug_exit(0);
}
