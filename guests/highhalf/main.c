// highhalf: a kernel shaped like xv6. It is linked at 0x80100000 and entered at its
// physical address with paging off; entry.S turns on paging with two 4 MiB pages, then
// main builds page tables of its own, masks the 8259 pair, takes its clock from the
// local APIC's periodic timer, and routes the disk's IRQ 14 and the serial port's
// IRQ 4 through the I/O APIC. It prints what it did and counted: only what any PC
// (QEMU, pvtool) must agree on, never how fast it was.

#include "types.h"
#include "mmu.h"
#include "multiboot.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "apic.h"
#include "memlayout.h"
#include "defs.h"

#define COM1 0x3F8
#define NSECTORS 4
#define SECTSIZE 512
#define INPUT_PATIENCE 200  // ticks (2 s) to wait for a line of serial input
#define SYNC '#'

extern char entry[];

// The page directory entry.S switches to: the first 4 MiB at 0 (where we run until
// the jump to main) and at KERNBASE, as 4 MiB pages.
__attribute__((aligned(PGSIZE))) pde_t entrypgdir[NPDENTRIES] = {
  [0] = PTE_P | PTE_W | PTE_PS,
  [KERNBASE >> PDXSHIFT] = PTE_P | PTE_W | PTE_PS,
};

static pde_t kpgdir[NPDENTRIES] __attribute__((aligned(PGSIZE)));
static pte_t kpt[PHYSTOP >> PDXSHIFT][NPTENTRIES] __attribute__((aligned(PGSIZE)));
static pte_t devpt[NPTENTRIES] __attribute__((aligned(PGSIZE)));

// Physical memory up to PHYSTOP at KERNBASE in 4 KiB pages, the two APIC pages
// uncached at their own addresses, and nothing at 0 any more.
static void
kvminit(void)
{
  uint i;

  for (i = 0; i < PHYSTOP / PGSIZE; i++)
    kpt[i / NPTENTRIES][i % NPTENTRIES] = i * PGSIZE | PTE_P | PTE_W;
  for (i = 0; i < PHYSTOP >> PDXSHIFT; i++)
    kpgdir[PDX(KERNBASE) + i] = V2P(kpt[i]) | PTE_P | PTE_W;
  devpt[PTX(IOAPIC_BASE)] = IOAPIC_BASE | PTE_P | PTE_W | PTE_PCD | PTE_PWT;
  devpt[PTX(LAPIC_BASE)] = LAPIC_BASE | PTE_P | PTE_W | PTE_PCD | PTE_PWT;
  kpgdir[PDX(LAPIC_BASE)] = V2P(devpt) | PTE_P | PTE_W;
  lcr3(V2P(kpgdir));
}

static char line[64];
static volatile uint nline;

void
uartintr(void)
{
  while (inb(COM1 + 5) & 0x01) {  // LSR: data ready
    char c = inb(COM1);
    if (nline < sizeof(line) - 1)
      line[nline++] = c;
  }
}

static void
await_ticks(uint n)
{
  uint start = ticks;

  while (ticks - start < n)
    hlt();
}

static void
disk(void)
{
  static uint buf[NSECTORS][SECTSIZE / 4];
  uint s, i, sum = 0, ok = 1, before = nirq[T_IRQ0 + IRQ_IDE];

  if (!ideinit()) {
    cprintf("ide: no disk\n");
    return;
  }
  ioapicenable(IRQ_IDE, 0);
  for (s = 0; s < NSECTORS; s++)
    ok &= ideread(s, buf[s]);
  for (s = 0; s < NSECTORS; s++)
    for (i = 0; i < SECTSIZE / 4; i++)
      sum = sum * 31 + buf[s][i];
  cprintf("ide: %d sectors read by interrupt (IRQ 14 through the I/O APIC, %d "
          "interrupts), checksum 0x%x %s\n", NSECTORS, nirq[T_IRQ0 + IRQ_IDE] - before,
          sum, verdict(check(ok)));
}

// A byte that reached the UART before uartinit reset its FIFO is lost, and on QEMU
// whether one had arrived depends on timing: the input starts with SYNC bytes that
// are skipped.
static void
serial(void)
{
  uint waited = 0, start;

  ioapicenable(IRQ_COM1, 0);
  outb(COM1 + 1, 0x01);  // interrupt when a byte arrives (the FIFO's trigger level: 1)
  while (waited++ < INPUT_PATIENCE && (nline == 0 || line[nline - 1] != '\n'))
    await_ticks(1);
  outb(COM1 + 1, 0);
  if (nline && line[nline - 1] == '\n')
    line[--nline] = 0;
  for (start = 0; start < nline && line[start] == SYNC; start++)
    ;
  if (nline)
    cprintf("serial: received by interrupt (IRQ 4 through the I/O APIC): '%s'\n",
            line + start);
  else
    cprintf("serial: no input\n");
}

void
main(uint magic, uint mbinfo)
{
  int passed;

  uartinit();
  passed = check(magic == MULTIBOOT_BOOTLOADER_MAGIC) & check(mbinfo != 0);
  cprintf("highhalf: linked at 0x%x, entered at physical 0x%x with paging off %s\n",
          KERNLINK, V2P(entry), verdict(passed));
  kvminit();
  passed = check((rcr4() & CR4_PSE) != 0) & check(rcr3() == V2P(kpgdir));
  cprintf("paging: 4 MiB pages at entry, then its own tables: %d MiB at 0x%x in 4 KiB "
          "pages, the APICs at 0x%x and 0x%x %s\n", PHYSTOP >> 20, KERNBASE,
          IOAPIC_BASE, LAPIC_BASE, verdict(passed));

  seginit(0);
  tvinit(T_BRKPT, 0);
  idtinit();
  outb(0x21, 0xFF);  // the 8259 pair is not used: every line masked
  outb(0xA1, 0xFF);
  lapicinit();
  ioapicinit();
  cprintf("apic: local APIC %d version 0x%x, I/O APIC %d with %d inputs, 8259 pair "
          "masked\n", lapicr(LAPIC_ID) >> 24, lapicr(LAPIC_VER) & 0xFF,
          ioapicr(IOAPIC_ID) >> 24, ((ioapicr(IOAPIC_VER) >> 16) & 0xFF) + 1);

  sti();
  await_ticks(10);
  passed = check(nirq[T_IRQ0 + IRQ_SPURIOUS] == 0) & check(nirq[T_IRQ0 + IRQ_ERROR] == 0);
  cprintf("timer: local APIC periodic, 10 ticks counted, no spurious or error "
          "interrupt %s\n", verdict(passed));
  disk();
  serial();
  cli();
  checkexit("highhalf");
}
