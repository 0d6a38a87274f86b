// hello: the first guest. It sets up what every kernel sets up (console, GDT,
// interrupt controller, IDT, paging, interrupt flag), checks each step took effect,
// and reports one line per step on the console.
//
// The output must be the same bytes on a real PC or QEMU (ring 0) and under pvtool
// (ring 1, other boot stack, privileged instructions rewritten), so it never shows
// selectors, raw EFLAGS or CR0, stack addresses or trap-frame addresses.

#include "types.h"
#include "mmu.h"
#include "multiboot.h"
#include "traps.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define PIC1_DATA 0x21  // master 8259 interrupt mask register
#define PIC2_DATA 0xA1  // slave 8259 interrupt mask register

// The BIOS leaves the timer's IRQ unmasked, and the PICs still deliver on the
// BIOS's vectors 8-15, which are CPU exceptions in protected mode: mask every
// line before interrupts are ever enabled.
static int
picinit(void)
{
  outb(PIC1_DATA, 0xFF);
  outb(PIC2_DATA, 0xFF);
  return check(inb(PIC1_DATA) == 0xFF) & check(inb(PIC2_DATA) == 0xFF);
}

// int3 must reach trap() exactly once and come back to the next instruction with
// every register as it was. The value rides through the trap in EAX.
static int
breakpoint(void)
{
  uint before = 0x600DF00D, after;

  asm volatile("int3" : "=a" (after) : "a" (before) : "memory");
  return check(trapcount(T_BRKPT) == 1) & check(after == before);
}

// After kvminit, CR0.PG must be on, CR3 must hold our directory, and memory must
// still be there through the new mapping.
static int
paging(void)
{
  static volatile uint probe;

  kvminit();
  probe = 0xC0FFEE;
  return check(rcr0() & CR0_PG) & check(rcr3() == (uint)kpgdir) &
         check(probe == 0xC0FFEE);
}

static int
interrupts_enabled(void)
{
  return (readeflags() & FL_IF) != 0;
}

static int
cli_sti(void)
{
  int passed;

  cli();
  passed = check(!interrupts_enabled());
  sti();
  return passed & check(interrupts_enabled());
}

// The save/restore idiom of every kernel (Linux's local_irq_save/restore):
// popf must give back the interrupt flag that pushf saved, set or clear.
static int
save_restore(void)
{
  uint flags;
  int passed;

  sti();
  flags = readeflags();
  cli();
  writeeflags(flags);
  passed = check(interrupts_enabled());

  cli();
  flags = readeflags();
  sti();
  writeeflags(flags);
  return passed & check(!interrupts_enabled());
}

void
main(uint magic, uint mbinfo)
{
  int passed;

  uartinit();
  passed = check(magic == MULTIBOOT_BOOTLOADER_MAGIC) & check(mbinfo != 0);
  cprintf("hello: multiboot handoff %s\n", verdict(passed));

  seginit(0);  // hello runs nothing in ring 3: no user segments, no TSS
  cprintf("gdt: flat code and data loaded, segment registers reloaded\n");
  cprintf("pic: all lines masked %s\n", verdict(picinit()));

  // int3 is raised on purpose (by debuggers, and by hello's own check), so, as in
  // Linux, any ring may raise it.
  tvinit(T_BRKPT, 0);
  idtinit();
  passed = breakpoint();
  cprintf("idt: int3 trapped %d time(s), registers kept %s\n", trapcount(T_BRKPT),
          verdict(passed));

  passed = paging();
  cprintf("paging: 4 MiB identity map, cr3=0x%x %s\n", rcr3(), verdict(passed));
  cprintf("eflags: cli clears IF, sti sets it %s\n", verdict(cli_sti()));
  cprintf("eflags: popf restores IF set and clear %s\n", verdict(save_restore()));
  checkexit("hello");
}
