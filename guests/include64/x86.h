// Every privileged or sensitive instruction a 64-bit guest uses, each behind a
// small inline wrapper (xv6's x86.h, in long mode), so C code reads as intent.
#ifndef GUESTS_X86_H
#define GUESTS_X86_H

#include "types.h"
#include "mmu.h"

static inline uchar
inb(ushort port)
{
  uchar data;

  asm volatile("inb %1, %0" : "=a" (data) : "d" (port));
  return data;
}

static inline ushort
inw(ushort port)
{
  ushort data;

  asm volatile("inw %1, %0" : "=a" (data) : "d" (port));
  return data;
}

static inline uint
inl(ushort port)
{
  uint data;

  asm volatile("inl %1, %0" : "=a" (data) : "d" (port));
  return data;
}

static inline void
insl(ushort port, void *addr, int cnt)
{
  asm volatile("cld; rep insl"
               : "+D" (addr), "+c" (cnt)
               : "d" (port)
               : "memory", "cc");
}

static inline void
outb(ushort port, uchar data)
{
  asm volatile("outb %0, %1" : : "a" (data), "d" (port));
}

static inline void
outw(ushort port, ushort data)
{
  asm volatile("outw %0, %1" : : "a" (data), "d" (port));
}

static inline void
outl(ushort port, uint data)
{
  asm volatile("outl %0, %1" : : "a" (data), "d" (port));
}

static inline void
outsl(ushort port, const void *addr, int cnt)
{
  asm volatile("cld; rep outsl"
               : "+S" (addr), "+c" (cnt)
               : "d" (port)
               : "cc");
}

static inline void
lgdt(void *base, int size)
{
  struct pseudodesc pd = { size - 1, (uint64)base };

  asm volatile("lgdt %0" : : "m" (pd));
}

static inline void
lidt(void *base, int size)
{
  struct pseudodesc pd = { size - 1, (uint64)base };

  asm volatile("lidt %0" : : "m" (pd));
}

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

// The task register's selector, as str shows it.
static inline ushort
rtr(void)
{
  ushort sel;

  asm volatile("str %0" : "=r" (sel));
  return sel;
}

static inline ushort
sldt(void)
{
  ushort sel;

  asm volatile("sldt %0" : "=r" (sel));
  return sel;
}

// The machine status word: CR0's low 16 bits, readable at any privilege level.
static inline ushort
smsw(void)
{
  ushort msw;

  asm volatile("smsw %0" : "=r" (msw));
  return msw;
}

static inline ushort
rcs(void)
{
  ushort cs;

  asm volatile("mov %%cs, %0" : "=r" (cs));
  return cs;
}

static inline ushort
rss(void)
{
  ushort ss;

  asm volatile("mov %%ss, %0" : "=r" (ss));
  return ss;
}

// RFLAGS through the stack, as Linux's native_save_fl and native_restore_fl. The
// names are the 32-bit ones (guests/include/x86.h) so that code which only tests
// or restores FL_IF (minikern's spinlock.c) serves both widths.
static inline uint64
readeflags(void)
{
  uint64 rflags;

  asm volatile("pushfq; popq %0" : "=r" (rflags));
  return rflags;
}

static inline void
writeeflags(uint64 rflags)
{
  asm volatile("pushq %0; popfq" : : "r" (rflags) : "memory", "cc");
}

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

// Enable interrupts and halt: sti's one-instruction shadow means no interrupt is
// taken between the two, so a wakeup cannot be lost.
static inline void
safe_halt(void)
{
  asm volatile("sti; hlt" : : : "memory");
}

static inline uint64
rcr0(void)
{
  uint64 val;

  asm volatile("movq %%cr0, %0" : "=r" (val));
  return val;
}

static inline void
lcr0(uint64 val)
{
  asm volatile("movq %0, %%cr0" : : "r" (val) : "memory");
}

static inline uint64
rcr2(void)
{
  uint64 val;

  asm volatile("movq %%cr2, %0" : "=r" (val));
  return val;
}

static inline uint64
rcr3(void)
{
  uint64 val;

  asm volatile("movq %%cr3, %0" : "=r" (val));
  return val;
}

static inline void
lcr3(uint64 val)
{
  asm volatile("movq %0, %%cr3" : : "r" (val) : "memory");
}

static inline uint64
rcr4(void)
{
  uint64 val;

  asm volatile("movq %%cr4, %0" : "=r" (val));
  return val;
}

static inline void
invlpg(void *va)
{
  asm volatile("invlpg (%0)" : : "r" (va) : "memory");
}

static inline uint64
rdmsr(uint msr)
{
  uint lo, hi;

  asm volatile("rdmsr" : "=a" (lo), "=d" (hi) : "c" (msr));
  return ((uint64)hi << 32) | lo;
}

static inline void
wrmsr(uint msr, uint64 val)
{
  asm volatile("wrmsr" : : "c" (msr), "a" ((uint)val), "d" ((uint)(val >> 32)));
}

static inline uint
xchg(volatile uint *addr, uint newval)
{
  uint result;

  // The + in "+m" denotes a read-modify-write operand.
  asm volatile("lock; xchgl %0, %1"
               : "+m" (*addr), "=a" (result)
               : "1" (newval)
               : "cc");
  return result;
}

// The registers a trap saves, lowest address first: the general registers
// (trapasm.h's PUSH_REGS), the vector and error code (the stub's, or the CPU's),
// then the frame the CPU pushes, which iretq pops. A syscall builds the same frame
// (minikern64's syscallasm.S), so C code sees one shape.
struct trapframe {
  uint64 r15;
  uint64 r14;
  uint64 r13;
  uint64 r12;
  uint64 r11;
  uint64 r10;
  uint64 r9;
  uint64 r8;
  uint64 rbp;
  uint64 rdi;
  uint64 rsi;
  uint64 rdx;
  uint64 rcx;
  uint64 rbx;
  uint64 rax;

  uint64 trapno;
  uint64 err;

  uint64 rip;
  uint64 cs;
  uint64 rflags;
  uint64 rsp;
  uint64 ss;
};

#endif
