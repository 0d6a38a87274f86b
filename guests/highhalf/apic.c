// The local APIC and the I/O APIC set up as xv6's lapic.c and ioapic.c do it: the
// local APIC's timer drives the clock, every other LVT entry is masked, and each
// device line is routed through the I/O APIC to vector T_IRQ0 + irq.

#include "types.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "apic.h"
#include "defs.h"

#define ICR_BCAST  0x80000  // all including self
#define TIMER_TICR 10000000 // bus clock ticks a tick: 10 ms at QEMU's 1 GHz

void
lapicinit(void)
{
  lapicw(LAPIC_SVR, SVR_ENABLE | (T_IRQ0 + IRQ_SPURIOUS));

  // The timer counts the bus clock down from TICR, again and again, and interrupts.
  lapicw(LAPIC_TDCR, TDCR_BY_1);
  lapicw(LAPIC_TIMER, LVT_PERIODIC | (T_IRQ0));
  lapicw(LAPIC_TICR, TIMER_TICR);

  // Nothing comes through LINT0 and LINT1: the 8259 pair is off.
  lapicw(LAPIC_LINT0, LVT_MASKED);
  lapicw(LAPIC_LINT1, LVT_MASKED);
  if (((lapicr(LAPIC_VER) >> 16) & 0xFF) >= 4)
    lapicw(LAPIC_PERF, LVT_MASKED);
  lapicw(LAPIC_ERROR, T_IRQ0 + IRQ_ERROR);

  // Clear the error status (back-to-back writes), and anything still in service.
  lapicw(LAPIC_ESR, 0);
  lapicw(LAPIC_ESR, 0);
  lapicw(LAPIC_EOI, 0);

  // An INIT level de-assert to every CPU synchronises the arbitration IDs.
  lapicw(LAPIC_ICRHI, 0);
  lapicw(LAPIC_ICRLO, ICR_BCAST | DM_INIT | LVT_LEVEL);
  while (lapicr(LAPIC_ICRLO) & ICR_PENDING)
    ;

  lapicw(LAPIC_TPR, 0);
}

void
lapiceoi(void)
{
  lapicw(LAPIC_EOI, 0);
}

// Every entry edge-triggered, active high, masked, on the vector of its line.
void
ioapicinit(void)
{
  int i, maxintr = (ioapicr(IOAPIC_VER) >> 16) & 0xFF;

  for (i = 0; i <= maxintr; i++) {
    ioapicw(IOAPIC_REDTBL + 2 * i, RTE_MASKED | (T_IRQ0 + i));
    ioapicw(IOAPIC_REDTBL + 2 * i + 1, 0);
  }
}

// Route IRQ to CPU's local APIC (physical destination), unmasked.
void
ioapicenable(int irq, int cpu)
{
  ioapicw(IOAPIC_REDTBL + 2 * irq, T_IRQ0 + irq);
  ioapicw(IOAPIC_REDTBL + 2 * irq + 1, cpu << 24);
}
