"""The model-specific registers pvtool's emulator and patcher use, and their fields
(Intel SDM Vol. 4, "Model-Specific Registers", Table 2-2; AMD APM Vol. 2, 6.1.1 for
SYSCALL/SYSRET, whose names the system-call MSRs take here).

The fast system calls take their selectors from these: SYSCALL from STAR[47:32] and
SYSENTER from IA32_SYSENTER_CS, SS being the descriptor after CS; their returns
SYSRET from STAR[63:48] (SS is the descriptor after CS) and SYSEXIT from
IA32_SYSENTER_CS (the user's CS and SS are the 3rd and 4th descriptors after it).
SYSCALL and SYSRET need EFER.SCE. A 64-bit kernel writes the system-call entries and
the segment bases with wrmsr; patches/xen64 turns them into callbacks and
set_segment_base.
"""

IA32_SYSENTER_CS = 0x174
IA32_SYSENTER_ESP = 0x175
IA32_SYSENTER_EIP = 0x176
IA32_EFER = 0xC000_0080
STAR = 0xC000_0081
LSTAR = 0xC000_0082  # SYSCALL's RIP from 64-bit code
CSTAR = 0xC000_0083  # SYSCALL's RIP from compatibility mode
SFMASK = 0xC000_0084  # RFLAGS bits SYSCALL clears (Intel's IA32_FMASK)
FS_BASE = 0xC000_0100
GS_BASE = 0xC000_0101
KERNEL_GS_BASE = 0xC000_0102  # what swapgs exchanges with GS_BASE
TSC_AUX = 0xC000_0103  # what rdtscp returns in ECX (SDM Vol. 4, table 2-2)

EFER_SCE = 1 << 0  # SYSCALL/SYSRET enabled
EFER_LME = 1 << 8  # long mode enabled
EFER_LMA = 1 << 10  # long mode active (read-only: set by CR0.PG with LME)
EFER_NXE = 1 << 11  # no-execute enabled
STAR_SYSCALL_CS_SHIFT = 32  # STAR[47:32]: SYSCALL's CS; SS is the descriptor after it
STAR_SYSRET_CS_SHIFT = 48  # STAR[63:48]: the selector SYSRET loads into CS

# SYSCALL, SYSENTER and SYSRET load SS with the descriptor after CS (SDM Vol. 2,
# AMD APM Vol. 3).
SS_AFTER_CS = 8
# Both returns go to ring 3: the selectors they load get RPL 3 whatever the MSR says.
FAST_RETURN_RPL = 3
# SYSEXIT: CS = IA32_SYSENTER_CS + 16, SS = + 24 (SDM Vol. 2, SYSEXIT).
SYSEXIT_CS_OFFSET = 16
SYSEXIT_SS_OFFSET = 24
