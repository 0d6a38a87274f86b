"""Bits of EFLAGS and the x86 control registers pvtool uses (Intel SDM vol. 3A: 2.3
EFLAGS, 2.5 control registers), written once. MSRs and EFER are in x86/msrs.py, the
TSS's fields in x86/tss.py."""

EFLAGS_STATUS = 0x8D5  # CF, PF, AF, ZF, SF, OF: the arithmetic flags
EFLAGS_RESERVED = 1 << 1  # always reads 1
EFLAGS_TF = 1 << 8
EFLAGS_IF = 1 << 9
EFLAGS_DF = 1 << 10
EFLAGS_IOPL = 3 << 12
EFLAGS_NT = 1 << 14
EFLAGS_RF = 1 << 16
EFLAGS_VM = 1 << 17
EFLAGS_AC = 1 << 18

CR0_PE = 1 << 0
CR0_TS = 1 << 3
CR0_WP = 1 << 16
CR0_PG = 1 << 31

CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
CR4_FSGSBASE = 1 << 16  # rd/wr{fs,gs}base allowed at any CPL
