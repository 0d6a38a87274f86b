// The local APIC and the I/O APIC as apicprobe and highhalf use them: register
// offsets (Intel SDM vol. 3A, "Local APIC Register Address Map"; the 82093AA I/O APIC
// datasheet, "Register Description"), at the addresses a PC maps them.
#ifndef GUESTS_APIC_H
#define GUESTS_APIC_H

#include "types.h"

#define LAPIC_BASE   0xFEE00000
#define IOAPIC_BASE  0xFEC00000

// Local APIC registers (byte offsets).
#define LAPIC_ID     0x020
#define LAPIC_VER    0x030
#define LAPIC_TPR    0x080
#define LAPIC_PPR    0x0A0
#define LAPIC_EOI    0x0B0
#define LAPIC_LDR    0x0D0
#define LAPIC_DFR    0x0E0
#define LAPIC_SVR    0x0F0
#define LAPIC_ISR    0x100
#define LAPIC_TMR    0x180
#define LAPIC_IRR    0x200
#define LAPIC_ESR    0x280
#define LAPIC_ICRLO  0x300
#define LAPIC_ICRHI  0x310
#define LAPIC_TIMER  0x320
#define LAPIC_THERM  0x330
#define LAPIC_PERF   0x340
#define LAPIC_LINT0  0x350
#define LAPIC_LINT1  0x360
#define LAPIC_ERROR  0x370
#define LAPIC_TICR   0x380
#define LAPIC_TCCR   0x390
#define LAPIC_TDCR   0x3E0

#define SVR_ENABLE     0x100
#define LVT_MASKED     0x10000
#define LVT_PERIODIC   0x20000
#define LVT_LEVEL      0x08000
#define DM_FIXED       0x000
#define DM_NMI         0x400
#define DM_INIT        0x500
#define DM_STARTUP     0x600
#define DM_EXTINT      0x700
#define ICR_PENDING    0x01000
#define ICR_ASSERT     0x04000
#define ICR_SELF       0x40000
#define ICR_ALL_BUT    0xC0000
#define TDCR_BY_1      0x0B

// I/O APIC: an index written to IOREGSEL picks the register IOWIN shows.
#define IOREGSEL       0x00
#define IOWIN          0x10
#define IOAPIC_ID      0x00
#define IOAPIC_VER     0x01
#define IOAPIC_ARB     0x02
#define IOAPIC_REDTBL  0x10  // entry n: low word at 0x10 + 2n, high word after it
#define RTE_MASKED     0x10000
#define RTE_LEVEL      0x08000
#define RTE_LOW_ACTIVE 0x02000

#define IA32_APIC_BASE 0x1B

// The registers through identity-mapped physical addresses, for the 32-bit guests
// that run so; a 64-bit kernel maps the APICs where it chooses (minikern64's lapic.c).
#ifndef __x86_64__
static inline uint
lapicr(uint reg)
{
  return *(volatile uint *)(LAPIC_BASE + reg);
}

static inline void
lapicw(uint reg, uint value)
{
  *(volatile uint *)(LAPIC_BASE + reg) = value;
  (void)lapicr(LAPIC_ID);  // wait for the write to finish, as xv6's lapicw does
}

static inline uint
ioapicr(uint reg)
{
  *(volatile uint *)(IOAPIC_BASE + IOREGSEL) = reg;
  return *(volatile uint *)(IOAPIC_BASE + IOWIN);
}

static inline void
ioapicw(uint reg, uint value)
{
  *(volatile uint *)(IOAPIC_BASE + IOREGSEL) = reg;
  *(volatile uint *)(IOAPIC_BASE + IOWIN) = value;
}

static inline unsigned long long
rdmsr(uint msr)
{
  uint lo, hi;

  asm volatile("rdmsr" : "=a" (lo), "=d" (hi) : "c" (msr));
  return ((unsigned long long)hi << 32) | lo;
}
#endif

#endif
