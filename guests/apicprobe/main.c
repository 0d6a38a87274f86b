// apicprobe: what the PC's local APIC and I/O APIC are and do, printed on COM1 so
// that a run on QEMU and a run on pvtool can be compared byte for byte. It prints
// register values as it finds them (after SeaBIOS, and after writing all ones and all
// zeros), then exercises each mechanism and prints only what must not depend on how
// fast the machine is: which vectors arrived, in which order, how many times where
// the count is fixed, and yes/no answers.

#include "types.h"
#include "mmu.h"
#include "multiboot.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "apic.h"

#define PIC1 0x20
#define PIC2 0xA0
#define PIT_CH0 0x40
#define PIT_CMD 0x43
#define COM1 0x3F8

#define V_SELF    0x41   // self-IPI by shorthand
#define V_OWNID   0x42   // self-IPI by destination ID
#define V_ABSENT  0x43   // to an APIC that is not there
#define V_TPR     0x45
#define V_LOW1    0x52
#define V_LOW2    0x53
#define V_HIGH    0x71
#define V_ONESHOT 0x60
#define V_PERIOD  0x61
#define V_WINDOW  0x62
#define V_PIT     0x30   // the PIT through the I/O APIC
#define V_PIN0    0x3F   // I/O APIC input 0: nothing drives it
#define V_UART    0x34

static const uint lapic_regs[] = {
  LAPIC_ID, LAPIC_VER, LAPIC_TPR, LAPIC_PPR, LAPIC_LDR, LAPIC_DFR, LAPIC_SVR,
  LAPIC_ESR, LAPIC_ICRLO, LAPIC_ICRHI, LAPIC_TIMER, LAPIC_THERM, LAPIC_PERF,
  LAPIC_LINT0, LAPIC_LINT1, LAPIC_ERROR, LAPIC_TICR, LAPIC_TDCR,
};
#define NREGS (sizeof(lapic_regs) / sizeof(lapic_regs[0]))

static volatile uint count[NIDTENTRIES];
static volatile uint order[8], norder;
static volatile uint seen_isr, seen_ppr, seen_tmr, seen_remote_irr, seen_iir;
static volatile uint nmi_inside;

static void
eoi(void)
{
  lapicw(LAPIC_EOI, 0);
}

static int
vector_bit(uint base, int vector)
{
  return (lapicr(base + 0x10 * (vector / 32)) >> (vector % 32)) & 1;
}

static void
spin(uint n)
{
  volatile uint i;

  for (i = 0; i < n; i++)
    ;
}

// Wait with interrupts on until COUNT[VECTOR] reaches N (or give up: the caller's
// printout then shows the count that was reached).
static void
await(int vector, uint n)
{
  uint i;

  sti();
  for (i = 0; i < 20000000 && count[vector] < n; i++)
    ;
  cli();
}

static void
nmi(void)
{
  if (count[T_NMI] == 1) {  // the first: a second NMI must wait for our iret
    lapicw(LAPIC_ICRLO, ICR_SELF | DM_NMI);
    spin(10000);
    nmi_inside = count[T_NMI];
  }
}

void
trap(struct trapframe *tf)
{
  uint v = tf->trapno;

  count[v]++;
  if (v == T_NMI) {
    nmi();
    return;
  }
  if (v < T_IRQ0) {
    cprintf("apicprobe: unexpected exception %d\n", v);
    debug_exit(1);
  }
  if (v == T_IRQ0) {  // the PIT through the 8259 pair
    outb(PIC1, 0x20);
    return;
  }
  if (norder < 8)
    order[norder++] = v;
  if (v == V_SELF) {
    seen_isr = vector_bit(LAPIC_ISR, V_SELF);
    seen_ppr = lapicr(LAPIC_PPR);
  } else if (v == V_UART) {
    seen_tmr = vector_bit(LAPIC_TMR, V_UART);
    seen_remote_irr = (ioapicr(IOAPIC_REDTBL + 2 * 4) & 0x4000) != 0;
    seen_iir = inb(COM1 + 2);
  }
  eoi();
}

static void
dump_lapic(const char *what)
{
  uint i;

  cprintf("lapic %s:", what);
  for (i = 0; i < NREGS; i++)
    cprintf(" %x=%x", lapic_regs[i], lapicr(lapic_regs[i]));
  cprintf("\n");
}

static void
dump_ioapic(const char *what)
{
  int i;

  cprintf("ioapic %s: id=%x ver=%x arb=%x\n", what, ioapicr(IOAPIC_ID),
          ioapicr(IOAPIC_VER), ioapicr(IOAPIC_ARB));
  for (i = 0; i < 24; i++)
    cprintf("%s%x:%x%s", i % 8 ? " " : "  rte ", ioapicr(IOAPIC_REDTBL + 2 * i + 1),
            ioapicr(IOAPIC_REDTBL + 2 * i), i % 8 == 7 ? "\n" : "");
}

// Every register but ICR low (writing it sends) and the current count (it moves).
static void
fill_lapic(uint value)
{
  uint i;

  for (i = 0; i < NREGS; i++)
    if (lapic_regs[i] != LAPIC_ICRLO)
      lapicw(lapic_regs[i], value);
}

static void
registers(void)
{
  uint esr[3];

  dump_lapic("at entry");
  dump_ioapic("at entry");
  fill_lapic(0xFFFFFFFF);
  dump_lapic("all ones");
  fill_lapic(0);
  dump_lapic("all zeros");
  ioapicw(IOAPIC_ID, 0xFFFFFFFF);
  ioapicw(IOAPIC_VER, 0xFFFFFFFF);
  ioapicw(IOAPIC_ARB, 0xFFFFFFFF);
  ioapicw(IOAPIC_REDTBL + 2 * 5, 0xFFFFFFFF);
  ioapicw(IOAPIC_REDTBL + 2 * 5 + 1, 0xFFFFFFFF);
  ioapicw(IOAPIC_REDTBL + 2 * 6, 0xFFFF7FFF);
  ioapicw(IOAPIC_REDTBL + 2 * 6 + 1, 0xFFFFFFFF);
  *(volatile uint *)(IOAPIC_BASE + IOREGSEL) = 0x1234567F;
  cprintf("ioapic ioregsel after writing 0x1234567f: %x\n",
          *(volatile uint *)(IOAPIC_BASE + IOREGSEL));
  dump_ioapic("after writes");
  ioapicw(IOAPIC_ID, 0);
  ioapicw(IOAPIC_REDTBL + 2 * 5, RTE_MASKED);
  ioapicw(IOAPIC_REDTBL + 2 * 6, RTE_MASKED);
  cprintf("lapic narrow reads: version byte 2 %x, low word %x\n",
          *(volatile uchar *)(LAPIC_BASE + LAPIC_VER + 2),
          *(volatile ushort *)(LAPIC_BASE + LAPIC_VER));
  esr[0] = lapicr(LAPIC_ESR);
  (void)lapicr(0x40);
  esr[1] = lapicr(LAPIC_ESR);
  lapicw(LAPIC_ESR, 0);
  esr[2] = lapicr(LAPIC_ESR);
  cprintf("lapic esr: %x, after reading a register that is not there %x, "
          "after writing it %x\n", esr[0], esr[1], esr[2]);
  // The state every later test starts from.
  lapicw(LAPIC_SVR, SVR_ENABLE | 0xFF);
  lapicw(LAPIC_DFR, 0xFFFFFFFF);
  lapicw(LAPIC_LINT0, LVT_MASKED | DM_EXTINT);
  lapicw(LAPIC_LINT1, DM_NMI);
  lapicw(LAPIC_TIMER, LVT_MASKED);
  lapicw(LAPIC_TDCR, TDCR_BY_1);
}

static void
ipis(void)
{
  lapicw(LAPIC_ICRLO, ICR_SELF | V_SELF);
  await(V_SELF, 1);
  cprintf("self-IPI 0x%x (shorthand self): taken %d time(s), in service in the "
          "handler %d, PPR in the handler %x, after EOI %x\n",
          V_SELF, count[V_SELF], seen_isr, seen_ppr, lapicr(LAPIC_PPR));
  lapicw(LAPIC_ICRHI, lapicr(LAPIC_ID));
  lapicw(LAPIC_ICRLO, V_OWNID);
  await(V_OWNID, 1);
  lapicw(LAPIC_ICRHI, 1 << 24);
  lapicw(LAPIC_ICRLO, V_ABSENT);
  lapicw(LAPIC_ICRLO, DM_INIT | ICR_ASSERT);
  lapicw(LAPIC_ICRLO, DM_STARTUP | 0x10);
  sti();
  spin(10000);
  cli();
  cprintf("IPI to our own ID taken %d time(s); to absent APIC 1: fixed taken %d "
          "time(s), INIT and SIPI ignored, ICR low reads %x\n",
          count[V_OWNID], count[V_ABSENT], lapicr(LAPIC_ICRLO));
  lapicw(LAPIC_ICRHI, 0);
}

static void
priorities(void)
{
  uint held;

  lapicw(LAPIC_TPR, 0x50);
  lapicw(LAPIC_ICRLO, ICR_SELF | V_TPR);
  sti();
  spin(100000);
  cli();
  held = count[V_TPR] == 0 && vector_bit(LAPIC_IRR, V_TPR);
  cprintf("TPR 0x50 holds 0x%x back: %s (PPR %x); ", V_TPR, held ? "yes" : "no",
          lapicr(LAPIC_PPR));
  lapicw(LAPIC_TPR, 0);
  await(V_TPR, 1);
  cprintf("TPR 0 lets it through: taken %d time(s)\n", count[V_TPR]);

  norder = 0;
  lapicw(LAPIC_ICRLO, ICR_SELF | V_LOW1);
  lapicw(LAPIC_ICRLO, ICR_SELF | V_HIGH);
  lapicw(LAPIC_ICRLO, ICR_SELF | V_LOW2);
  await(V_LOW1, 1);
  cprintf("three pending vectors taken in the order %x %x %x\n", order[0], order[1],
          order[2]);
}

static void
nmis(void)
{
  lapicw(LAPIC_ICRLO, ICR_SELF | DM_NMI);
  spin(10000);
  cprintf("NMI by self-IPI with IF clear: taken %d time(s); a second NMI raised in "
          "the handler was held until its iret: %s, then taken: %s\n", count[T_NMI],
          nmi_inside == 1 ? "yes" : "no", count[T_NMI] == 2 ? "yes" : "no");
}

static void
timers(void)
{
  uint before, after, i, highest = 0;

  lapicw(LAPIC_TIMER, V_ONESHOT);
  lapicw(LAPIC_TICR, 100000);
  await(V_ONESHOT, 1);
  spin(1000000);
  cprintf("timer one-shot: fired %d time(s), current count then %d\n",
          count[V_ONESHOT], lapicr(LAPIC_TCCR));

  lapicw(LAPIC_TIMER, LVT_MASKED | V_ONESHOT);
  lapicw(LAPIC_TICR, 0xFFFFFFFF);
  before = lapicr(LAPIC_TCCR);
  for (after = before; after == before; after = lapicr(LAPIC_TCCR))
    spin(1000);  // poll gently: an emulator may update it only now and then
  cprintf("timer current count: starts at or below the initial count and goes down: "
          "%s\n", after < before ? "yes" : "no");

  lapicw(LAPIC_TICR, 1000);
  while (lapicr(LAPIC_TCCR) != 0)
    spin(1000);
  sti();
  spin(100000);
  cli();
  cprintf("timer masked: counted down to 0 and fired %d time(s)\n", count[V_ONESHOT] - 1);

  lapicw(LAPIC_TIMER, LVT_PERIODIC | V_PERIOD);
  lapicw(LAPIC_TICR, 1000000);
  for (i = 0; i < 100; i++)
    if (lapicr(LAPIC_TCCR) > highest)
      highest = lapicr(LAPIC_TCCR);
  await(V_PERIOD, 3);
  lapicw(LAPIC_TIMER, LVT_MASKED | LVT_PERIODIC | V_PERIOD);
  cprintf("timer periodic: reloaded, %s3 interrupts; the current count never above "
          "the initial: %s\n", count[V_PERIOD] >= 3 ? "at least " : "fewer than ",
          highest <= 1000000 ? "yes" : "no");
}

static void
pit_1khz(void)
{
  outb(PIT_CMD, 0x34);  // channel 0, low then high byte, rate generator
  outb(PIT_CH0, 1193 & 0xFF);
  outb(PIT_CH0, 1193 >> 8);
}

static void
ioapic_routes(void)
{
  ioapicw(IOAPIC_REDTBL + 2 * 2 + 1, 0);
  ioapicw(IOAPIC_REDTBL + 2 * 2, V_PIT);
  ioapicw(IOAPIC_REDTBL + 2 * 0, V_PIN0);
  pit_1khz();
  await(V_PIT, 5);
  ioapicw(IOAPIC_REDTBL + 2 * 2, RTE_MASKED);
  ioapicw(IOAPIC_REDTBL + 2 * 0, RTE_MASKED);
  cprintf("ioapic: the PIT arrives on input 2 (vector 0x%x): %s; input 0 took %d\n",
          V_PIT, count[V_PIT] >= 5 ? "yes" : "no", count[V_PIN0]);

  ioapicw(IOAPIC_REDTBL + 2 * 4, RTE_LEVEL | V_UART);
  outb(COM1 + 1, 0x02);  // THR empty interrupts
  await(V_UART, 1);
  outb(COM1 + 1, 0x00);
  cprintf("ioapic: UART THR empty on input 4, level-triggered: taken %d time(s), TMR "
          "%d and remote IRR %d in the handler, IIR %x there, remote IRR after EOI %d\n",
          count[V_UART], seen_tmr, seen_remote_irr, seen_iir,
          (ioapicr(IOAPIC_REDTBL + 2 * 4) & 0x4000) != 0);
  ioapicw(IOAPIC_REDTBL + 2 * 4, RTE_MASKED);
}

// The 8259 pair through LINT0 in ExtINT mode (virtual wire), and LINT0 masked.
static void
virtual_wire(void)
{
  uint before;

  outb(PIC1, 0x11); outb(PIC1 + 1, T_IRQ0); outb(PIC1 + 1, 0x04); outb(PIC1 + 1, 0x01);
  outb(PIC2, 0x11); outb(PIC2 + 1, T_IRQ0 + 8); outb(PIC2 + 1, 0x02); outb(PIC2 + 1, 0x01);
  outb(PIC2 + 1, 0xFF);
  outb(PIC1 + 1, 0xFE);  // the PIT alone
  lapicw(LAPIC_LINT0, DM_EXTINT);
  await(T_IRQ0, 3);
  cprintf("lint0 ExtINT: the 8259's timer interrupts arrive: %s\n",
          count[T_IRQ0] >= 3 ? "yes" : "no");
  // Mask LINT0 only while the 8259 asks for nothing: QEMU keeps an INTR raised
  // before the mask and, finding no vector at INTA, delivers -1 (a #GP).
  outb(PIC1 + 1, 0xFF);
  lapicw(LAPIC_LINT0, LVT_MASKED | DM_EXTINT);
  outb(PIC1 + 1, 0xFE);
  before = count[T_IRQ0];
  lapicw(LAPIC_TIMER, V_WINDOW);
  lapicw(LAPIC_TICR, 20000000);  // 20 ms: twenty PIT periods
  await(V_WINDOW, 1);
  cprintf("lint0 masked: 8259 interrupts in 20 ms of APIC timer: %d; ",
          count[T_IRQ0] - before);
  lapicw(LAPIC_LINT0, DM_EXTINT);
  await(T_IRQ0, before + 1);
  cprintf("unmasked again, the held request arrives: %s\n",
          count[T_IRQ0] > before ? "yes" : "no");
  outb(PIC1 + 1, 0xFF);
}

void
main(uint magic, uint mbinfo)
{
  (void)magic;
  (void)mbinfo;
  uartinit();
  outb(PIC1 + 1, 0xFF);  // the BIOS's timer stays out of the way until we want it
  outb(PIC2 + 1, 0xFF);
  seginit(0);
  tvinit(T_BRKPT, 0);
  idtinit();
  registers();
  ipis();
  priorities();
  nmis();
  timers();
  ioapic_routes();
  virtual_wire();
  cprintf("apicprobe: done\n");
  debug_exit(0);
}
