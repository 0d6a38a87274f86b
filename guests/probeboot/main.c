// probeboot: print on COM1 what a Multiboot loader and the PC's firmware leave behind,
// so that QEMU's -kernel boot and pvtool's native mode can be compared byte for byte:
// the registers at entry (recorded by entry.S), the GDT and IDT registers and the GDT's
// descriptors, A20, the Multiboot information structure (spec 0.6.96, section 3.3) and
// everything it points to, the real-mode IVT, the BIOS data area and the EBDA.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "multiboot.h"
#include "probe.h"

_Static_assert(__builtin_offsetof(struct entry_state, esp) == E_ESP, "probe.h");
_Static_assert(__builtin_offsetof(struct entry_state, cs) == E_CS, "probe.h");
_Static_assert(__builtin_offsetof(struct entry_state, gdtr) == E_GDTR, "probe.h");
_Static_assert(__builtin_offsetof(struct entry_state, idtr) == E_IDTR, "probe.h");
_Static_assert(__builtin_offsetof(struct entry_state, tr) == E_TR, "probe.h");

struct entry_state entry;

#define MAX_GDT_ENTRIES 16
#define MAX_STRING 256
#define MODULE_HEAD 16  // bytes of each module printed
#define INFO_WORDS 29   // the information structure through the framebuffer fields

// Multiboot info flags (3.3) that point at more data.
#define MB_MODS    (1 << 3)
#define MB_ELF     (1 << 5)
#define MB_MMAP    (1 << 6)
#define MB_DRIVES  (1 << 7)
#define MB_CONFIG  (1 << 8)
#define MB_APM     (1 << 10)

// The BIOS data area's timer tick count (0x46C, 4 bytes) and its midnight flag (0x470)
// follow the host's clock on QEMU: masked.
#define BDA_TICKS 0x46C
#define BDA_TICKS_END 0x471
#define BDA_EBDA_SEGMENT 0x40E
#define EBDA_BYTES 1024  // the whole of SeaBIOS's 1 KiB EBDA

// Low memory at a constant address is out of bounds of any C object to the compiler
// (address 0 is the null pointer): launder the address through an empty asm.
static uint
peek(uint addr, int size)
{
  asm("" : "+r"(addr));
  return size == 1 ? *(volatile uchar *)addr : *(volatile ushort *)addr;
}

static void
hex(uint value, int digits)
{
  static const char xdigits[] = "0123456789abcdef";
  while (digits-- > 0)
    uartputc(xdigits[(value >> (4 * digits)) & 0xF]);
}

static void
field(const char *name, uint value)
{
  cprintf("%s=", name);
  hex(value, 8);
  cprintf("\n");
}

static void
string(const char *name, uint addr)
{
  const char *s = (const char *)addr;
  int i;

  cprintf("%s=\"", name);
  for (i = 0; i < MAX_STRING && s[i]; i++)
    uartputc(s[i]);
  cprintf("\"\n");
}

static void
dump(const char *name, uint addr, uint len, uint skip_from, uint skip_to)
{
  uint a;

  for (a = addr; a < addr + len; a++) {
    if ((a - addr) % 16 == 0) {
      cprintf("%s ", name);
      hex(a, 5);
      cprintf(":");
    }
    if (a >= skip_from && a < skip_to)
      cprintf(" ..");
    else {
      cprintf(" ");
      hex(peek(a, 1), 2);
    }
    if ((a - addr) % 16 == 15)
      cprintf("\n");
  }
}

static void
registers(void)
{
  field("eax", entry.eax); field("ebx", entry.ebx); field("ecx", entry.ecx);
  field("edx", entry.edx); field("esi", entry.esi); field("edi", entry.edi);
  field("ebp", entry.ebp); field("esp", entry.esp); field("eflags", entry.eflags);
  field("cr0", entry.cr0); field("cr2", entry.cr2); field("cr3", entry.cr3);
  field("cr4", entry.cr4);
  field("cs", entry.cs); field("ds", entry.ds); field("es", entry.es);
  field("fs", entry.fs); field("gs", entry.gs); field("ss", entry.ss);
  field("ldtr", entry.ldtr); field("tr", entry.tr);
  field("idtr.base", entry.idtr.base); field("idtr.limit", entry.idtr.limit);
}

static void
gdt_entries(void)
{
  uint *desc = (uint *)entry.gdtr.base;
  uint i, n = (entry.gdtr.limit + 1) / 8;

  field("gdtr.base", entry.gdtr.base);
  field("gdtr.limit", entry.gdtr.limit);
  for (i = 0; i < n && i < MAX_GDT_ENTRIES; i++) {
    cprintf("gdt[%d]=", i);
    hex(desc[2 * i + 1], 8);
    hex(desc[2 * i], 8);
    cprintf("\n");
  }
}

// A20: with the gate closed, address bit 20 is forced to 0 and a write at 1 MiB + x
// lands on x.
static void
a20(void)
{
  static volatile uint above;
  volatile uint *below = (volatile uint *)((uint)&above - 0x100000);
  uint saved = *below;

  above = ~saved;
  field("a20", *below == saved);
  above = saved;
}

static void
modules(uint *info)
{
  uint *mod = (uint *)info[6];
  uint i, j;

  for (i = 0; i < info[5]; i++, mod += 4) {
    cprintf("mod[%d]=", i);
    hex(mod[0], 8); cprintf(" "); hex(mod[1], 8); cprintf(" "); hex(mod[3], 8);
    cprintf(" head");
    for (j = 0; j < MODULE_HEAD && mod[0] + j < mod[1]; j++) {
      cprintf(" ");
      hex(((uchar *)mod[0])[j], 2);
    }
    cprintf("\n");
    string("mod.string", mod[2]);
  }
}

static void
mmap(uint *info)
{
  uint at = info[12], end = info[12] + info[11];

  while (at < end) {
    uint *e = (uint *)at;
    cprintf("mmap size=");
    hex(e[0], 8);
    cprintf(" base=");
    hex(e[2], 8); hex(e[1], 8);
    cprintf(" length=");
    hex(e[4], 8); hex(e[3], 8);
    cprintf(" type=");
    hex(e[5], 8);
    cprintf("\n");
    at += e[0] + 4;
  }
}

static void
multiboot(uint *info)
{
  uint i;

  for (i = 0; i < INFO_WORDS; i++) {
    cprintf("info[%d]=", i);
    hex(info[i], 8);
    cprintf("\n");
  }
  if (info[0] & (1 << 2))
    string("cmdline", info[4]);
  if (info[0] & (1 << 9))
    string("boot_loader_name", info[16]);
  if (info[0] & MB_MODS)
    modules(info);
  if (info[0] & MB_MMAP)
    mmap(info);
  if (info[0] & MB_ELF)
    dump("shdr", info[9], info[7] * info[8], 0, 0);
  if (info[0] & MB_DRIVES)
    dump("drives", info[14], info[13], 0, 0);
  if (info[0] & MB_CONFIG)
    dump("config", info[15], 16, 0, 0);
  if (info[0] & MB_APM)
    dump("apm", info[17], 20, 0, 0);
}

static void
firmware(void)
{
  uint ebda = peek(BDA_EBDA_SEGMENT, 2) << 4;

  dump("ivt", 0, 0x400, 0, 0);
  dump("bda", 0x400, 0x100, BDA_TICKS, BDA_TICKS_END);
  field("ebda", ebda);
  dump("ebda", ebda, EBDA_BYTES, 0, 0);
}

void
main(uint magic, uint info)
{
  uartinit();
  cprintf("probeboot\n");
  registers();
  gdt_entries();
  a20();
  if (magic == MULTIBOOT_BOOTLOADER_MAGIC)
    multiboot((uint *)info);
  firmware();
  cprintf("probeboot: done\n");
  debug_exit(0);
}

// The library's trap entry needs a handler; the probe installs no IDT of its own, so
// this runs only if the loader's state was so wrong that an exception reached it.
void
trap(struct trapframe *tf)
{
  (void)tf;
  cprintf("probeboot: unexpected trap\n");
  debug_exit(3);
}
