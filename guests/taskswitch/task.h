// taskswitch's view of hardware tasks (Intel SDM vol. 3A, chapter 7): its GDT slots,
// the task gate, and one wrapper per task-switching instruction, as in x86.h.
#ifndef TASKSWITCH_TASK_H
#define TASKSWITCH_TASK_H

#include "types.h"
#include "mmu.h"

// GDT slots after the library's (guests/include/mmu.h): the main task's TSS is
// SEG_TSS; each other task has a TSS of its own.
#define SEG_JMPTASK  6   // entered with ljmp, leaves with ljmp
#define SEG_CALLTASK 7   // entered with lcall, leaves with iret
#define SEG_DFTASK   8   // the double-fault task, through an IDT task gate
#define SEG_INTTASK  9   // int 0x40, through an IDT task gate
#define SEG_SHORTTSS 10  // a TSS whose limit is too small: #TS
#define SEG_CALLGATE 11  // a task gate in the GDT, to the lcall task
#define SEG_IRQTASK  12  // the timer interrupt, through an IDT task gate
#define NTASKSEGS    13

#define SEL(seg)     ((seg) << 3)

#define STS_TG       0x5  // task gate
#define STS_T32B     0xB  // busy 32-bit TSS
#define FL_NT        0x00004000  // nested task: iret returns to the back link
#define CR0_TS       0x00000008  // task switched

#define T_TASKINT    0x40  // int 0x40 switches to the int task
#define T_SHORTINT   0x41  // int 0x41's gate names the TSS that is too short

// A task gate: only its selector and DPL count (SDM 7.2.5).
#define SETTASKGATE(gate, sel, d)                     \
{                                                     \
  (gate).off_15_0 = 0;                                \
  (gate).cs = (sel);                                  \
  (gate).args = 0;                                    \
  (gate).rsv1 = 0;                                    \
  (gate).type = STS_TG;                               \
  (gate).s = 0;                                       \
  (gate).dpl = (d);                                   \
  (gate).p = 1;                                       \
  (gate).off_31_16 = 0;                               \
}

// What pushal leaves on a task's stack when it starts (tasks.S).
struct pushregs {
  uint edi;
  uint esi;
  uint ebp;
  uint oesp;
  uint ebx;
  uint edx;
  uint ecx;
  uint eax;
};

// Far jumps and calls to a TSS or task gate switch tasks; the offset is ignored.
// Every register comes back from the TSS when the task resumes, so none is
// clobbered; memory is.
#define LJMP(sel)  asm volatile("ljmp %0, $0" : : "i" (sel) : "memory", "cc")
#define LCALL(sel) asm volatile("lcall %0, $0" : : "i" (sel) : "memory", "cc")

// iret with EFLAGS.NT set returns to the task in the back link.
static inline void
iret(void)
{
  asm volatile("iret" : : : "memory", "cc");
}

// tasks.S: where each task starts, with pushal's frame for the C code.
void jmptask_entry(void);
void calltask_entry(void);
void dftask_entry(void);
void inttask_entry(void);
void irqtask_entry(void);
// tasks.S: a data segment load that raises #GP(0x1230), and where to go on.
void bad_ds_load(void);
void bad_ds_fault(void);
void bad_ds_done(void);

#endif
