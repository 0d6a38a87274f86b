// taskswitch: hardware task switches (Intel SDM vol. 3A, chapter 7), each way a task
// can be entered and left: ljmp there and back, lcall and iret (straight to the TSS
// and through a task gate in the GDT), int n, a double fault and the timer interrupt
// through task gates in the IDT, and the faults a bad switch raises (#TS for a TSS
// too small, #GP for a busy one). Every task prints the registers it started with,
// its back link, EFLAGS.NT and the busy bits it sees, so the output is the same bytes
// on QEMU and on pvtool's bare PC only if the switches are the CPU's.

#include "types.h"
#include "mmu.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "task.h"

#define STACKSIZE 4096
#define NTASKS    5   // the tasks with a stack of their own (not the main task)
#define INT_LEN   2   // int imm8
#define LJMP_LEN  7   // ljmp ptr16:32

#define PIC1_CMD  0x20
#define PIC1_DATA 0x21
#define PIC2_CMD  0xA0
#define PIC2_DATA 0xA1
#define PIC_EOI   0x20
#define PIT_CH0   0x40
#define PIT_MODE  0x43
#define PIT_HZ    1193182
#define TICK_HZ   100
#define TICKS     3

static struct taskstate ts_main, ts_jmp, ts_call, ts_df, ts_int, ts_short, ts_irq;
static uchar stacks[NTASKS][STACKSIZE] __attribute__((aligned(16)));
static volatile uint ticks, lasttrap, lasterr;

static void
settss(int seg, struct taskstate *ts, uint limit)
{
  gdt[seg] = SEG16(STS_T32A, ts, limit, DPL_KERNEL);
  gdt[seg].s = 0;
}

// A ring-0 task that starts at entry on its own stack, interrupts off, with general
// registers tag, tag+1, ... so that each task shows it got its own.
static void
taskinit(struct taskstate *ts, void (*entry)(void), uchar *stack, uint tag)
{
  ts->eip = (uint *)entry;
  ts->eflags = 0x2;
  ts->esp = (uint *)(stack + STACKSIZE);
  ts->eax = tag;
  ts->ecx = tag + 1;
  ts->edx = tag + 2;
  ts->ebx = tag + 3;
  ts->esi = tag + 4;
  ts->edi = tag + 5;
  ts->cs = SEL(SEG_KCODE);
  ts->ss = ts->ds = ts->es = ts->fs = ts->gs = SEL(SEG_KDATA);
  ts->iomb = 0xFFFF;
}

static void
tasksinit(void)
{
  union {
    struct gatedesc gate;
    struct segdesc seg;
  } callgate;

  taskinit(&ts_jmp, jmptask_entry, stacks[0], 0x10000);
  taskinit(&ts_call, calltask_entry, stacks[1], 0x20000);
  taskinit(&ts_df, dftask_entry, stacks[2], 0x30000);
  taskinit(&ts_int, inttask_entry, stacks[3], 0x40000);
  taskinit(&ts_irq, irqtask_entry, stacks[4], 0x50000);
  settss(SEG_JMPTASK, &ts_jmp, sizeof(ts_jmp) - 1);
  settss(SEG_CALLTASK, &ts_call, sizeof(ts_call) - 1);
  settss(SEG_DFTASK, &ts_df, sizeof(ts_df) - 1);
  settss(SEG_INTTASK, &ts_int, sizeof(ts_int) - 1);
  settss(SEG_SHORTTSS, &ts_short, 0x2B);  // a 16-bit TSS's size: too small (#TS)
  settss(SEG_IRQTASK, &ts_irq, sizeof(ts_irq) - 1);
  SETTASKGATE(callgate.gate, SEL(SEG_CALLTASK), DPL_KERNEL);
  gdt[SEG_CALLGATE] = callgate.seg;
  lgdt(gdt, NTASKSEGS * sizeof(gdt[0]));

  SETTASKGATE(idt[T_DBLFLT], SEL(SEG_DFTASK), DPL_KERNEL);
  SETTASKGATE(idt[T_TASKINT], SEL(SEG_INTTASK), DPL_KERNEL);
  SETTASKGATE(idt[T_SHORTINT], SEL(SEG_SHORTTSS), DPL_KERNEL);
  SETTASKGATE(idt[T_IRQ0 + IRQ_TIMER], SEL(SEG_IRQTASK), DPL_KERNEL);
}

static int
busy(int seg)
{
  return gdt[seg].type == STS_T32B;
}

static int
nested(void)
{
  return (readeflags() & FL_NT) != 0;
}

static void
showregs(const char *who, struct pushregs *r)
{
  cprintf("%s: tr 0x%x, eax 0x%x ecx 0x%x edx 0x%x ebx 0x%x esi 0x%x edi 0x%x\n",
          who, rtr(), r->eax, r->ecx, r->edx, r->ebx, r->esi, r->edi);
}

static void
showlinks(const char *who, struct taskstate *self)
{
  cprintf("%s: back link 0x%x, NT %d, TS %d, busy main %d jmp %d call %d df %d "
          "int %d irq %d\n", who, self->link, nested(), (rcr0() & CR0_TS) != 0,
          busy(SEG_TSS), busy(SEG_JMPTASK), busy(SEG_CALLTASK), busy(SEG_DFTASK),
          busy(SEG_INTTASK), busy(SEG_IRQTASK));
}

// Entered by ljmp: no back link, no NT, and the main task is no longer busy.
void
jmptask(struct pushregs *r)
{
  showregs("jmp task", r);
  showlinks("jmp task", &ts_jmp);
  check(rtr() == SEL(SEG_JMPTASK));
  check(r->eax == 0x10000);
  check(!nested());
  check(busy(SEG_JMPTASK));
  check(!busy(SEG_TSS));
  LJMP(SEL(SEG_TSS));
  cprintf("jmp task: resumed after its ljmp\n");
  LJMP(SEL(SEG_TSS));
}

// Entered by lcall (or a task gate): a back link to the caller, NT set, both busy.
// Its iret returns there; the next call resumes it after the iret.
void
calltask(struct pushregs *r)
{
  int calls;

  showregs("call task", r);
  for (calls = 1;; calls++) {
    cprintf("call task: call %d\n", calls);
    showlinks("call task", &ts_call);
    check(ts_call.link == SEL(SEG_TSS));
    check(nested());
    check(busy(SEG_TSS));
    check(busy(SEG_CALLTASK));
    iret();
  }
}

// int 0x40 through a task gate: a call, with no error code.
void
inttask(struct pushregs *r)
{
  showregs("int task", r);
  for (;;) {
    showlinks("int task", &ts_int);
    check(ts_int.link == SEL(SEG_TSS));
    check(nested());
    check(busy(SEG_INTTASK));
    iret();
  }
}

// The double fault's task: the CPU pushed the error code (0) on this task's stack,
// and the main task is frozen at the instruction that faulted first. It is sent on
// past it, and this task is never entered again.
void
dftask(struct pushregs *r)
{
  uint err = *(uint *)(r + 1);

  showregs("double fault task", r);
  showlinks("double fault task", &ts_df);
  cprintf("double fault task: error code %d, main task at bad_ds_fault %s, its eax 0x%x\n",
          err, verdict(ts_main.eip == (uint *)bad_ds_fault), ts_main.eax);
  check(err == 0);
  check(ts_df.link == SEL(SEG_TSS));
  check(ts_main.eip == (uint *)bad_ds_fault);
  ts_main.eip = (uint *)bad_ds_done;
  iret();
  cprintf("double fault task: entered twice\n");
  debug_exit(1);
}

// The timer's task: one tick per entry, and the end of the interrupt.
void
irqtask(struct pushregs *r)
{
  showregs("timer task", r);
  for (;;) {
    ticks++;
    check(ts_irq.link == SEL(SEG_TSS));
    check(nested());
    outb(PIC1_CMD, PIC_EOI);
    iret();
  }
}

// The faults the tests expect come here through ordinary interrupt gates; they are
// recorded and skipped. Anything else ends the run.
void
trap(struct trapframe *tf)
{
  lasttrap = tf->trapno;
  lasterr = tf->err;
  if (tf->trapno == T_TSS) {
    tf->eip += INT_LEN;
    return;
  }
  if (tf->trapno == T_GPFLT) {
    tf->eip += LJMP_LEN;
    return;
  }
  cprintf("trap: unexpected vector %d, error code 0x%x at eip 0x%x\n", tf->trapno,
          tf->err, tf->eip);
  debug_exit(1);
}

static void
jmp_test(void)
{
  LJMP(SEL(SEG_JMPTASK));
  showlinks("main after ljmp", &ts_main);
  check(rtr() == SEL(SEG_TSS));
  check(busy(SEG_TSS));
  check(!busy(SEG_JMPTASK));
  check(ts_jmp.eip != (uint *)jmptask_entry);
  LJMP(SEL(SEG_JMPTASK));
  cprintf("main: back from the jmp task\n");
}

static void
call_test(void)
{
  LCALL(SEL(SEG_CALLTASK));
  showlinks("main after lcall", &ts_main);
  check(!nested());
  check(!busy(SEG_CALLTASK));
  check(busy(SEG_TSS));
  LCALL(SEL(SEG_CALLGATE));
  showlinks("main after lcall through a task gate", &ts_main);
}

static void
int_test(void)
{
  asm volatile("int %0" : : "i" (T_TASKINT) : "memory", "cc");
  showlinks("main after int 0x40", &ts_main);
  check(!nested());
  check(!busy(SEG_INTTASK));
}

static void
fault_tests(void)
{
  asm volatile("int %0" : : "i" (T_SHORTINT) : "memory", "cc");
  cprintf("int 0x41 to a short TSS: vector %d, error code 0x%x\n", lasttrap, lasterr);
  check(lasttrap == T_TSS);
  check(lasterr == SEL(SEG_SHORTTSS));
  LJMP(SEL(SEG_TSS));
  cprintf("ljmp to the busy main task: vector %d, error code 0x%x\n", lasttrap, lasterr);
  check(lasttrap == T_GPFLT);
  check(lasterr == SEL(SEG_TSS));
}

// #GP whose gate is absent: #NP while delivering it, so #DF, whose gate is a task gate.
static void
df_test(void)
{
  idt[T_GPFLT].p = 0;
  bad_ds_load();
  idt[T_GPFLT].p = 1;
  showlinks("main after the double fault", &ts_main);
  check(!busy(SEG_DFTASK));
}

// The 8259s remapped to T_IRQ0, only the timer unmasked, the 8254 at TICK_HZ.
static void
timer_test(void)
{
  outb(PIC1_CMD, 0x11);
  outb(PIC2_CMD, 0x11);
  outb(PIC1_DATA, T_IRQ0);
  outb(PIC2_DATA, T_IRQ0 + 8);
  outb(PIC1_DATA, 1 << IRQ_SLAVE);
  outb(PIC2_DATA, IRQ_SLAVE);
  outb(PIC1_DATA, 0x01);
  outb(PIC2_DATA, 0x01);
  outb(PIC1_DATA, 0xFF & ~(1 << IRQ_TIMER));
  outb(PIC2_DATA, 0xFF);
  outb(PIT_MODE, 0x34);
  outb(PIT_CH0, (PIT_HZ / TICK_HZ) & 0xFF);
  outb(PIT_CH0, (PIT_HZ / TICK_HZ) >> 8);
  sti();
  while (ticks < TICKS)
    hlt();
  cli();
  outb(PIC1_DATA, 0xFF);
  cprintf("main: the timer task ran %d times\n", ticks);
  showlinks("main after the timer", &ts_main);
  check(!busy(SEG_IRQTASK));
}

int
main(void)
{
  uartinit();
  seginit(&ts_main);
  tvinit(T_SYSCALL, 0);
  tasksinit();
  idtinit();
  cprintf("taskswitch: main task tr 0x%x\n", rtr());
  jmp_test();
  call_test();
  int_test();
  fault_tests();
  df_test();
  timer_test();
  checkexit("taskswitch");
}
