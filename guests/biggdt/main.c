// biggdt: a GDT of 2,064 descriptors, the size the CPU test kernels of a public test
// suite load (issue 12), with the segments this kernel uses far up in it: flat code
// and data, a small data segment whose base is a string (read back through FS, so
// only a descriptor that really holds that base prints it), and a TSS loaded with
// ltr. A hypervisor that takes a GDT of one page only cannot boot it; one that drops
// or moves high descriptors prints other bytes.

#include "types.h"
#include "mmu.h"
#include "x86.h"
#include "lib.h"
#include "multiboot.h"

#define NDESC      2064  // 16,512 bytes: five pages, limit 0x407f
#define SEL_CODE   2050
#define SEL_DATA   2051
#define SEL_WINDOW 2060
#define SEL_TSS    2062

static struct segdesc biggdt[NDESC] __attribute__((aligned(PGSIZE)));
static struct taskstate ts;
static char window[] = "the bytes at the window segment's base";

// The byte at offset i of the segment FS selects.
static uchar
fsbyte(uint i)
{
  uchar c;
  asm volatile("movb %%fs:(%1), %0" : "=q" (c) : "r" (i));
  return c;
}

static void
load_high_segments(void)
{
  biggdt[SEL_CODE] = SEG(STA_X | STA_R, 0, 0xffffffff, DPL_KERNEL);
  biggdt[SEL_DATA] = SEG(STA_W, 0, 0xffffffff, DPL_KERNEL);
  biggdt[SEL_WINDOW] = SEG16(STA_W, window, sizeof(window) - 2, DPL_KERNEL);
  biggdt[SEL_TSS] = SEG16(STS_T32A, &ts, sizeof(ts) - 1, DPL_KERNEL);
  biggdt[SEL_TSS].s = 0;
  lgdt(biggdt, sizeof(biggdt));
  asm volatile("ljmp %0, $1f\n1:" : : "i" (SEL_CODE << 3) : "memory");
  loadss(SEL_DATA << 3);
  loadds(SEL_DATA << 3);
  loades(SEL_DATA << 3);
  loadgs(SEL_DATA << 3);
  loadfs(SEL_WINDOW << 3);
  ts.ss0 = SEL_DATA << 3;
  ts.iomb = 0xFFFF;
  ltr(SEL_TSS << 3);
}

int
main(uint magic, struct multiboot_info *info)
{
  uint i, same = 1;

  (void)info;
  uartinit();
  check(magic == MULTIBOOT_BOOTLOADER_MAGIC);
  cprintf("biggdt: lgdt of %d descriptors (limit %x)\n", NDESC, NDESC * 8 - 1);
  load_high_segments();
  cprintf("biggdt: code %x, data %x, tss %x loaded\n", SEL_CODE << 3, SEL_DATA << 3,
          SEL_TSS << 3);
  cprintf("biggdt: through fs = %x: \"", SEL_WINDOW << 3);
  for (i = 0; i < sizeof(window) - 1; i++) {
    cprintf("%c", fsbyte(i));
    same &= fsbyte(i) == (uchar)window[i];
  }
  cprintf("\" %s\n", verdict(check(same)));
  checkexit("biggdt");
}
