"""Why the guest left the emulator for Python: every exit is counted under one kind,
the same way in every mode, so the run summary and `pvtool bench` compare like with
like. An exit is counted once, by what was finally done with it."""

from enum import StrEnum


class Exit(StrEnum):
    HYPERCALL = "hypercall"  # int 0x82 (32-bit) or syscall (64-bit) from the PV kernel
    EXCEPTION = "exception"  # a fault delivered to the guest's own handler
    EMULATED = "emulated"  # a faulting privileged instruction the hypervisor emulated
    TRAP_SITE = "trap-site"  # an int3 the patcher left for the hypervisor to emulate
    PTWR = "ptwr"  # a kernel store into its page tables, validated and emulated
    GLUE_ALIAS = "glue-alias"  # a higher-half kernel's jump below the glue window, moved in
    INTERRUPT = "interrupt"  # a software interrupt (int n, int3, into) delivered
    IRQ = "irq"  # a device interrupt delivered
    IRQ_DROPPED = "irq-dropped"  # a device interrupt the PV kernel has no handler for
    UPCALL = "upcall"  # a Xen event upcall
    SYSCALL = "syscall"  # a 64-bit PV user's syscall or sysenter, bounced to its kernel
    IO = "io"  # a port access
    MMIO = "mmio"  # an access to a device's memory-mapped registers
    HLT = "hlt"  # the CPU waited for an interrupt
    VCPU_SWITCH = "vcpu-switch"  # the hypervisor put another of the domain's vCPUs on it
