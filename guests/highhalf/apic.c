// The local APIC and the I/O APIC set up as xv6's lapic.c and ioapic.c do it, at the
// addresses the MP table gives (mp.c): the local APIC's timer drives the clock, every
// other LVT entry is masked, and each device line is routed through the I/O APIC to
// vector T_IRQ0 + irq.

#include "types.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "apic.h"
#include "defs.h"

#define ICR_BCAST  0x80000  // all including self
#define TIMER_TICR 10000000 // bus clock ticks a tick: 10 ms at QEMU's 1 GHz

static volatile uint *lapic;  // 32-bit registers, 16 bytes apart

struct ioapic {
  uint reg;
  uint pad[3];
  uint data;
};
static volatile struct ioapic *ioapic;

static uint
lapicread(uint reg)
{
  return lapic[reg / 4];
}

static void
lapicwrite(uint reg, uint value)
{
  lapic[reg / 4] = value;
  lapic[LAPIC_ID / 4];  // wait for the write to finish, by reading
}

static uint
ioapicread(uint reg)
{
  ioapic->reg = reg;
  return ioapic->data;
}

static void
ioapicwrite(uint reg, uint value)
{
  ioapic->reg = reg;
  ioapic->data = value;
}

void
lapicinit(void)
{
  lapic = (uint *)lapicaddr;
  lapicwrite(LAPIC_SVR, SVR_ENABLE | (T_IRQ0 + IRQ_SPURIOUS));

  // The timer counts the bus clock down from TICR, again and again, and interrupts.
  lapicwrite(LAPIC_TDCR, TDCR_BY_1);
  lapicwrite(LAPIC_TIMER, LVT_PERIODIC | (T_IRQ0));
  lapicwrite(LAPIC_TICR, TIMER_TICR);

  // Nothing comes through LINT0 and LINT1: the 8259 pair is off.
  lapicwrite(LAPIC_LINT0, LVT_MASKED);
  lapicwrite(LAPIC_LINT1, LVT_MASKED);
  if (((lapicread(LAPIC_VER) >> 16) & 0xFF) >= 4)
    lapicwrite(LAPIC_PERF, LVT_MASKED);
  lapicwrite(LAPIC_ERROR, T_IRQ0 + IRQ_ERROR);

  // Clear the error status (back-to-back writes), and anything still in service.
  lapicwrite(LAPIC_ESR, 0);
  lapicwrite(LAPIC_ESR, 0);
  lapicwrite(LAPIC_EOI, 0);

  // An INIT level de-assert to every CPU synchronises the arbitration IDs.
  lapicwrite(LAPIC_ICRHI, 0);
  lapicwrite(LAPIC_ICRLO, ICR_BCAST | DM_INIT | LVT_LEVEL);
  while (lapicread(LAPIC_ICRLO) & ICR_PENDING)
    ;

  lapicwrite(LAPIC_TPR, 0);
}

void
lapiceoi(void)
{
  lapicwrite(LAPIC_EOI, 0);
}

// Every entry edge-triggered, active high, masked, on the vector of its line. Its ID
// register must say what the MP table says; returns whether it does.
int
ioapicinit(void)
{
  int i, id, maxintr;

  ioapic = (struct ioapic *)ioapicaddr;
  id = ioapicread(IOAPIC_ID) >> 24;
  maxintr = (ioapicread(IOAPIC_VER) >> 16) & 0xFF;
  cprintf("apic: local APIC %d version 0x%x, I/O APIC %d with %d inputs, 8259 pair "
          "masked\n", lapicread(LAPIC_ID) >> 24, lapicread(LAPIC_VER) & 0xFF, id,
          maxintr + 1);
  if (id != ioapicid)
    cprintf("ioapicinit: id %d isn't the MP table's %d; not an MP\n", id, ioapicid);
  for (i = 0; i <= maxintr; i++) {
    ioapicwrite(IOAPIC_REDTBL + 2 * i, RTE_MASKED | (T_IRQ0 + i));
    ioapicwrite(IOAPIC_REDTBL + 2 * i + 1, 0);
  }
  return id == ioapicid;
}

// Route IRQ to CPU's local APIC (physical destination), unmasked.
void
ioapicenable(int irq, int cpu)
{
  ioapicwrite(IOAPIC_REDTBL + 2 * irq, T_IRQ0 + irq);
  ioapicwrite(IOAPIC_REDTBL + 2 * irq + 1, cpu << 24);
}
