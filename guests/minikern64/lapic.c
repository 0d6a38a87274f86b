// The local APIC: enabled, and its timer run for a few periods beside the 8254
// (which stays the clock: its ticks reach the 8259 pair through LINT0, which the
// firmware left in ExtINT mode and this file leaves alone). Register offsets from
// guests/include/apic.h (Intel SDM vol. 3A, chapter 10).

#include "types.h"
#include "x86.h"
#include "apic.h"
#include "lib.h"
#include "arch.h"

#define LAPIC_PERIOD 10000000  // bus clock ticks a period: 10 ms at QEMU's 1 GHz
#define LAPIC_RUNS   3         // periods the timer must interrupt for

static volatile uint *lapic = (volatile uint *)LAPICVA;  // 32-bit registers
static volatile uint lapicticks;

static uint
lapicread(uint reg)
{
  return lapic[reg / 4];
}

static void
lapicwrite(uint reg, uint value)
{
  lapic[reg / 4] = value;
  lapicread(LAPIC_ID);  // wait for the write to finish, by reading
}

// Software-enable the APIC with its spurious vector; the timer stays masked.
void
lapicinit(void)
{
  lapicwrite(LAPIC_SVR, SVR_ENABLE | T_LAPICSPUR);
  lapicwrite(LAPIC_TIMER, LVT_MASKED | T_LAPICTIMER);
  lapicwrite(LAPIC_TPR, 0);
}

void
lapicintr(void)
{
  lapicticks++;
  lapicwrite(LAPIC_EOI, 0);
}

// Run the timer periodically until it has interrupted LAPIC_RUNS times, then mask
// it again. Returns whether it did; leaves interrupts off.
int
lapictimer(void)
{
  lapicticks = 0;
  lapicwrite(LAPIC_TDCR, TDCR_BY_1);
  lapicwrite(LAPIC_TIMER, LVT_PERIODIC | T_LAPICTIMER);
  lapicwrite(LAPIC_TICR, LAPIC_PERIOD);
  while (lapicticks < LAPIC_RUNS)
    safe_halt();
  cli();
  lapicwrite(LAPIC_TIMER, LVT_MASKED | T_LAPICTIMER);
  lapicwrite(LAPIC_TICR, 0);
  return lapicticks >= LAPIC_RUNS;
}
