"""Bits of the x86 control registers and the 32-bit TSS fields pvtool uses (Intel SDM
vol. 3A: 2.3 EFLAGS, 2.5 control registers, 7.2.1 the TSS), written once."""

EFLAGS_RESERVED = 1 << 1  # always reads 1
EFLAGS_TF = 1 << 8
EFLAGS_IF = 1 << 9
EFLAGS_IOPL = 3 << 12
EFLAGS_NT = 1 << 14
EFLAGS_RF = 1 << 16
EFLAGS_VM = 1 << 17

CR0_PE = 1 << 0
CR0_TS = 1 << 3
CR0_WP = 1 << 16
CR0_PG = 1 << 31

CR4_PSE = 1 << 4
CR4_PAE = 1 << 5

TSS32_ESP0 = 4  # ESP0, then SS0 (16 bits), in a 32-bit TSS

TSS64_RSP0 = 4  # RSP0 in a 64-bit TSS (SDM Vol. 3A, 8.7: after a reserved dword)
