// Routines to let C code use special x86 instructions, one small wrapper each, named
// as in xv6's x86.h. C code then reads as intent, and every privileged or sensitive
// instruction a guest uses lives in this one short file.
#ifndef GUESTS_X86_H
#define GUESTS_X86_H

#include "types.h"

struct segdesc;
struct gatedesc;

// Port I/O. "Nd" lets ports below 256 be an immediate, as in Linux's io.h.
static inline uchar
inb(ushort port)
{
  uchar data;
  asm volatile("inb %w1, %b0" : "=a" (data) : "Nd" (port));
  return data;
}

static inline ushort
inw(ushort port)
{
  ushort data;
  asm volatile("inw %w1, %w0" : "=a" (data) : "Nd" (port));
  return data;
}

static inline uint
inl(ushort port)
{
  uint data;
  asm volatile("inl %w1, %0" : "=a" (data) : "Nd" (port));
  return data;
}

static inline void
insl(ushort port, void *addr, int cnt)
{
  asm volatile("cld; rep insl" :
               "=D" (addr), "=c" (cnt) :
               "d" (port), "0" (addr), "1" (cnt) :
               "memory", "cc");
}

static inline void
outb(ushort port, uchar data)
{
  asm volatile("outb %b0, %w1" : : "a" (data), "Nd" (port));
}

// A register behind an index port and a data port (the CRTC, the RTC, ...).
static inline uchar
inb_indexed(ushort index_port, ushort data_port, uchar reg)
{
  outb(index_port, reg);
  return inb(data_port);
}

static inline void
outb_indexed(ushort index_port, ushort data_port, uchar reg, uchar value)
{
  outb(index_port, reg);
  outb(data_port, value);
}

static inline void
outw(ushort port, ushort data)
{
  asm volatile("outw %w0, %w1" : : "a" (data), "Nd" (port));
}

static inline void
outl(ushort port, uint data)
{
  asm volatile("outl %0, %w1" : : "a" (data), "Nd" (port));
}

static inline void
outsl(ushort port, const void *addr, int cnt)
{
  asm volatile("cld; rep outsl" :
               "=S" (addr), "=c" (cnt) :
               "d" (port), "0" (addr), "1" (cnt) :
               "cc");
}

// Descriptor tables. The CPU reads a 6-byte pseudo-descriptor: limit, then base.
static inline void
lgdt(struct segdesc *p, int size)
{
  volatile ushort pd[3];

  pd[0] = size - 1;
  pd[1] = (uint)p;
  pd[2] = (uint)p >> 16;
  asm volatile("lgdt (%0)" : : "r" (pd) : "memory");
}

static inline void
lidt(struct gatedesc *p, int size)
{
  volatile ushort pd[3];

  pd[0] = size - 1;
  pd[1] = (uint)p;
  pd[2] = (uint)p >> 16;
  asm volatile("lidt (%0)" : : "r" (pd) : "memory");
}

// What sgdt and sidt store: the same 6-byte pseudo-descriptor.
struct pseudodesc {
  ushort limit;
  uint base;
} __attribute__((packed));

static inline void
sgdt(struct pseudodesc *pd)
{
  asm volatile("sgdt %0" : "=m" (*pd));
}

static inline void
sidt(struct pseudodesc *pd)
{
  asm volatile("sidt %0" : "=m" (*pd));
}

static inline void
ltr(ushort sel)
{
  asm volatile("ltr %0" : : "r" (sel));
}

// The task register's selector (str: sensitive, it works in any ring).
static inline ushort
rtr(void)
{
  ushort sel;
  asm volatile("str %0" : "=r" (sel));
  return sel;
}

// Data segment registers. CS cannot be moved to: it needs a far jump (see seginit).
static inline void
loadds(ushort v)
{
  asm volatile("movw %0, %%ds" : : "r" (v) : "memory");
}

static inline void
loades(ushort v)
{
  asm volatile("movw %0, %%es" : : "r" (v) : "memory");
}

static inline void
loadfs(ushort v)
{
  asm volatile("movw %0, %%fs" : : "r" (v));
}

static inline void
loadgs(ushort v)
{
  asm volatile("movw %0, %%gs" : : "r" (v));
}

static inline void
loadss(ushort v)
{
  asm volatile("movw %0, %%ss" : : "r" (v) : "memory");
}

// EFLAGS. pushf/popf are how every kernel saves and restores the interrupt flag.
static inline uint
readeflags(void)
{
  uint eflags;
  asm volatile("pushfl; popl %0" : "=r" (eflags));
  return eflags;
}

static inline void
writeeflags(uint eflags)
{
  asm volatile("pushl %0; popfl" : : "g" (eflags) : "memory", "cc");
}

// The "memory" clobbers keep the compiler from moving loads and stores across the
// points where interrupts are turned off or on.
static inline void
cli(void)
{
  asm volatile("cli" : : : "memory");
}

static inline void
sti(void)
{
  asm volatile("sti" : : : "memory");
}

static inline void
hlt(void)
{
  asm volatile("hlt" : : : "memory");
}

// The idle loop's "sti; hlt": sti takes effect only after the next instruction, so
// no interrupt can slip in between and leave hlt waiting for the one after it.
static inline void
safe_halt(void)
{
  asm volatile("sti; hlt" : : : "memory");
}

// Control registers.
static inline uint
rcr0(void)
{
  uint val;
  asm volatile("movl %%cr0, %0" : "=r" (val));
  return val;
}

static inline void
lcr0(uint val)
{
  asm volatile("movl %0, %%cr0" : : "r" (val) : "memory");
}

// CR2 holds the faulting address after a page fault.
static inline uint
rcr2(void)
{
  uint val;
  asm volatile("movl %%cr2, %0" : "=r" (val));
  return val;
}

static inline uint
rcr3(void)
{
  uint val;
  asm volatile("movl %%cr3, %0" : "=r" (val));
  return val;
}

static inline void
lcr3(uint val)
{
  asm volatile("movl %0, %%cr3" : : "r" (val) : "memory");
}

static inline uint
rcr4(void)
{
  uint val;
  asm volatile("movl %%cr4, %0" : "=r" (val));
  return val;
}

static inline void
lcr4(uint val)
{
  asm volatile("movl %0, %%cr4" : : "r" (val) : "memory");
}

// Drop one page's translation from the TLB after changing its page table entry.
static inline void
invlpg(void *va)
{
  asm volatile("invlpg (%0)" : : "r" (va) : "memory");
}

// Atomic exchange; the lock prefix is implicit for xchg with memory.
static inline uint
xchg(volatile uint *addr, uint newval)
{
  uint result;
  asm volatile("lock; xchgl %0, %1" :
               "+m" (*addr), "=a" (result) :
               "1" (newval) :
               "cc");
  return result;
}

// Layout of the trap frame built on the stack by the hardware and by alltraps
// (guests/lib/trapasm.S), and passed to the guest's trap().
struct trapframe {
  // registers as pushed by pushal
  uint edi;
  uint esi;
  uint ebp;
  uint oesp;      // useless & ignored
  uint ebx;
  uint edx;
  uint ecx;
  uint eax;

  // rest of trap frame
  ushort gs;
  ushort padding1;
  ushort fs;
  ushort padding2;
  ushort es;
  ushort padding3;
  ushort ds;
  ushort padding4;
  uint trapno;

  // below here defined by x86 hardware
  uint err;
  uint eip;
  ushort cs;
  ushort padding5;
  uint eflags;

  // below here only when crossing rings, such as from user to kernel
  uint esp;
  ushort ss;
  ushort padding6;
};

#endif
