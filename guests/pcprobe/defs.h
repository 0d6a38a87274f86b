// pcprobe: what a kernel finds on the PC it boots on, printed on COM1 so that
// QEMU's answers and pvtool's can be compared byte for byte. Only facts that do not
// depend on the host's speed are printed: register values, flags, whether a
// counter moved, how many interrupts arrived before the probe stopped waiting.

// trap.c
extern volatile uint nirq[16];
extern volatile uchar rtc_flags[4];  // register C as each RTC interrupt found it
void irqinit(void);
void irqunmask(int irq);
void irqmask(int irq);
uint waitirq(int irq, uint count);

// The probes, one file each.
void cpuid_probe(void);
void memory_probe(void);
void ports_probe(void);
void hpet_probe(void);
void rtc_probe(void);
void ide_probe(void);
void reset_probe(const char *cmdline);

// hpet.c: the main counter as a clock for the other probes (10 ns a tick on QEMU).
void hpet_start(void);
void hpet_delay(uint ticks);
