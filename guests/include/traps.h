// x86 exception vectors (Intel SDM vol. 3A, table 6-1).
#ifndef GUESTS_TRAPS_H
#define GUESTS_TRAPS_H

#define T_DIVIDE   0   // divide error
#define T_DEBUG    1   // debug exception
#define T_NMI      2   // non-maskable interrupt
#define T_BRKPT    3   // breakpoint (int3)
#define T_OFLOW    4   // overflow
#define T_BOUND    5   // bounds check
#define T_ILLOP    6   // invalid opcode
#define T_DEVICE   7   // device not available
#define T_DBLFLT   8   // double fault
#define T_TSS     10   // invalid task switch segment
#define T_SEGNP   11   // segment not present
#define T_STACK   12   // stack exception
#define T_GPFLT   13   // general protection fault
#define T_PGFLT   14   // page fault
#define T_FPERR   16   // floating point error
#define T_ALIGN   17   // alignment check
#define T_MCHK    18   // machine check
#define T_SIMDERR 19   // SIMD floating point error

#define NIDTENTRIES 256

// Hardware interrupts: the 8259 pair is remapped so that IRQ n arrives on vector
// T_IRQ0 + n, clear of the exceptions.
#define T_IRQ0     32
#define IRQ_TIMER   0  // 8254 channel 0
#define IRQ_SLAVE   2  // the slave 8259 cascades into the master here
#define IRQ_SPUR1   7  // where the master reports a spurious interrupt
#define IRQ_SPUR2  15  // where the slave reports a spurious interrupt
#define NIRQS      16

// System calls from ring 3, as on Linux.
#define T_SYSCALL 0x80

#endif
