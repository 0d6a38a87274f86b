"""The model-specific registers pvtool's emulator reads, and their fields (Intel SDM
Vol. 4, "Model-Specific Registers"; AMD APM Vol. 2, 6.1.1 for SYSCALL/SYSRET).

The fast system-call returns take their selectors from these: SYSEXIT from
IA32_SYSENTER_CS (the user's CS and SS are the 3rd and 4th descriptors after it),
SYSRET from STAR[63:48] (SS is the descriptor after CS), and SYSRET needs EFER.SCE.
"""

IA32_SYSENTER_CS = 0x174
IA32_EFER = 0xC000_0080
STAR = 0xC000_0081

EFER_SCE = 1 << 0  # SYSCALL/SYSRET enabled
EFER_LME = 1 << 8  # long mode enabled
EFER_LMA = 1 << 10  # long mode active
EFER_NXE = 1 << 11  # the NX bit of page-table entries is honoured
STAR_SYSRET_CS_SHIFT = 48  # STAR[63:48]: the selector SYSRET loads into CS

# Both return to ring 3: the selectors they load get RPL 3 whatever the MSR says.
FAST_RETURN_RPL = 3
# SYSEXIT: CS = IA32_SYSENTER_CS + 16, SS = + 24 (SDM Vol. 2, SYSEXIT).
SYSEXIT_CS_OFFSET = 16
SYSEXIT_SS_OFFSET = 24
# SYSRET: SS = STAR[63:48] + 8 (AMD APM Vol. 3, SYSRET).
SYSRET_SS_OFFSET = 8
