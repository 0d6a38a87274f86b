"""The model-specific registers pvtool's emulator reads, and their fields (Intel SDM
Vol. 4, "Model-Specific Registers"; AMD APM Vol. 2, 6.1.1 for SYSCALL/SYSRET).

The fast system-call returns take their selectors from these: SYSEXIT from
IA32_SYSENTER_CS (the user's CS and SS are the 3rd and 4th descriptors after it),
SYSRET from STAR[63:48] (SS is the descriptor after CS), and SYSRET needs EFER.SCE.
"""

IA32_SYSENTER_CS = 0x174
IA32_SYSENTER_ESP = 0x175
IA32_SYSENTER_EIP = 0x176
IA32_EFER = 0xC000_0080
STAR = 0xC000_0081
LSTAR = 0xC000_0082  # SYSCALL's RIP from 64-bit code
CSTAR = 0xC000_0083  # SYSCALL's RIP from compatibility mode
FMASK = 0xC000_0084  # RFLAGS bits SYSCALL clears

EFER_SCE = 1 << 0  # SYSCALL/SYSRET enabled
EFER_LME = 1 << 8  # long mode enabled
EFER_LMA = 1 << 10  # long mode active (read-only: set by CR0.PG with LME)
EFER_NXE = 1 << 11  # no-execute enabled
STAR_SYSCALL_CS_SHIFT = 32  # STAR[47:32]: SYSCALL's CS; SS is the descriptor after it
STAR_SYSRET_CS_SHIFT = 48  # STAR[63:48]: the selector SYSRET loads into CS

# Both return to ring 3: the selectors they load get RPL 3 whatever the MSR says.
FAST_RETURN_RPL = 3
# SYSEXIT: CS = IA32_SYSENTER_CS + 16, SS = + 24 (SDM Vol. 2, SYSEXIT).
SYSEXIT_CS_OFFSET = 16
SYSEXIT_SS_OFFSET = 24
# SYSRET: SS = STAR[63:48] + 8 (AMD APM Vol. 3, SYSRET).
SYSRET_SS_OFFSET = 8

# x86-64's system-call and segment-base MSRs (Intel SDM Vol. 4, Table 2-2; AMD APM
# Vol. 2, 6.1.1): what a 64-bit kernel writes with wrmsr, and patches/xen64 turns into
# callbacks and set_segment_base.
IA32_SYSENTER_ESP = 0x175
IA32_SYSENTER_EIP = 0x176
LSTAR = 0xC000_0082  # the 64-bit syscall entry
CSTAR = 0xC000_0083  # the compatibility-mode syscall entry
SFMASK = 0xC000_0084  # RFLAGS bits syscall clears
FS_BASE = 0xC000_0100
GS_BASE = 0xC000_0101
KERNEL_GS_BASE = 0xC000_0102  # what swapgs exchanges with GS_BASE
