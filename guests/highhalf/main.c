// highhalf: a kernel shaped like xv6, booting the way xv6 boots. It is linked at
// 0x80100000 and entered at its physical address with paging off; entry.S turns on
// paging with two 4 MiB pages, then main builds page tables of its own, finds the
// APICs through the MP table, masks the 8259 pair, takes its clock from the local
// APIC's periodic timer, and routes the keyboard's IRQ 1, the serial port's IRQ 4
// and the disk's IRQ 14 through the I/O APIC; it reads and writes disk 1 and prints
// on COM1 and the CGA screen alike. It prints what it did and counted: only what any
// PC (QEMU, pvtool) must agree on, never how fast it was.

#include "types.h"
#include "mmu.h"
#include "multiboot.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "memlayout.h"
#include "defs.h"

#define COM1 0x3F8
#define NSECTORS 4
#define WRITTEN 7    // the sector of disk 1 highhalf writes
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

// Physical memory up to PHYSTOP at KERNBASE in 4 KiB pages, the device space at its
// own addresses in uncached 4 MiB pages, and nothing at 0 any more.
static void
kvminit(void)
{
  uint i;

  for (i = 0; i < PHYSTOP / PGSIZE; i++)
    kpt[i / NPTENTRIES][i % NPTENTRIES] = i * PGSIZE | PTE_P | PTE_W;
  for (i = 0; i < PHYSTOP >> PDXSHIFT; i++)
    kpgdir[PDX(KERNBASE) + i] = V2P(kpt[i]) | PTE_P | PTE_W;
  for (i = DEVSPACE >> PDXSHIFT; i < NPDENTRIES; i++)
    kpgdir[i] = i << PDXSHIFT | PTE_P | PTE_W | PTE_PS | PTE_PCD | PTE_PWT;
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
printsector(struct buf *b)
{
  int i;

  cprintf("ide: disk %d sector %d: '", b->dev, b->sector);
  for (i = 0; i < SECTSIZE && b->data[i] >= ' ' && b->data[i] < 0x7F; i++)
    cprintf("%c", b->data[i]);
  cprintf("'\n");
}

// Read SECTOR of disk 1 into B (or write B there if FLAGS says dirty), by interrupt.
static void
diskio(struct buf *b, uint sector, int flags)
{
  b->dev = 1;
  b->sector = sector;
  b->flags = flags;
  iderw(b);
}

// Read the first sectors of disk 1, then write the complement of the last of them to
// sector WRITTEN and read that back.
static void
disk(void)
{
  static struct buf b, copy;
  uint s, i, ok = 1, before = nirq[T_IRQ0 + IRQ_IDE];

  if (!ideinit()) {
    cprintf("ide: no disk 1\n");
    return;
  }
  for (s = 0; s < NSECTORS; s++) {
    diskio(&b, s, 0);
    printsector(&b);
  }
  for (i = 0; i < SECTSIZE; i++)
    copy.data[i] = ~b.data[i];
  diskio(&copy, WRITTEN, B_VALID | B_DIRTY);
  diskio(&b, WRITTEN, 0);
  for (i = 0; i < SECTSIZE; i++)
    ok &= b.data[i] == copy.data[i];
  cprintf("ide: sector %d of disk 1 written with sector %d's complement and read back, "
          "%d interrupts (IRQ 14 through the I/O APIC) %s\n", WRITTEN, NSECTORS - 1,
          nirq[T_IRQ0 + IRQ_IDE] - before, verdict(check(ok)));
}

// Lines typed on the keyboard, echoed on COM1 and the screen, until Escape. Keys may
// have been typed before the kernel asked (an edge on IRQ 1 while its I/O APIC entry
// was masked is lost, as on the 82093AA): take whatever waits once the line is routed.
static void
keyboard(void)
{
  char typed[64];

  cprintf("console: type a line on the keyboard\n");
  ioapicenable(IRQ_KBD, 0);
  cli();
  consoleintr(kbdgetc);
  sti();
  consoleread(typed, sizeof(typed));
  cprintf("console: read '%s' by interrupt (IRQ 1 through the I/O APIC)\n", typed);
  cprintf("console: press escape\n");
  while (consoleread(typed, sizeof(typed)) != ESC)
    ;
  consolefreeze();  // the verdict goes to COM1 only: the screen ends as it was read
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
          "pages, the device space from 0x%x %s\n", PHYSTOP >> 20, KERNBASE, DEVSPACE,
          verdict(passed));
  passed = check(mpinit());
  passed &= check(lapicaddr >= DEVSPACE) & check(ioapicaddr >= DEVSPACE);
  cprintf("mp: the APICs are in the device space %s\n", verdict(passed));

  seginit(0);
  tvinit(T_BRKPT, 0);
  idtinit();
  outb(0x21, 0xFF);  // the 8259 pair is not used: every line masked
  outb(0xA1, 0xFF);
  lapicinit();
  check(ioapicinit());

  sti();
  await_ticks(10);
  passed = check(nirq[T_IRQ0 + IRQ_SPURIOUS] == 0) & check(nirq[T_IRQ0 + IRQ_ERROR] == 0);
  cprintf("timer: local APIC periodic, 10 ticks counted, no spurious or error "
          "interrupt %s\n", verdict(passed));
  disk();
  serial();
  keyboard();
  cli();
  checkexit("highhalf");
}
