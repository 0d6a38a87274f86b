"""The PCI functions of QEMU 7.2's default i440FX PC (`-display none -net none`), as
a kernel finds them after SeaBIOS has programmed them: measured with guests/probefw on
QEMU (each function's 256 bytes, and each BAR's mask after all ones are written).

QEMU gives every function the same subsystem IDs (1af4:1100, Red Hat's vendor ID) and
SeaBIOS turns on I/O, memory decoding and SERR# in every command register. Registers
past the header are the chips' own (Intel 82441FX and 82371SB/AB datasheets); those
listed here are the ones that read non-zero on QEMU, with SeaBIOS's programming where
it programs them.

Departures: the registers are storage only. PAM and SMRAM (i440FX) do not remap the
BIOS area, PIRQ routing (PIIX3) does not reroute interrupts, and PMBA (PIIX4) does not
move the ACPI PM block from 0x600 (machine/acpi_pm.py); the IDE function's bus-master
registers (BAR4) and the VGA's framebuffer and MMIO BARs are not decoded.
"""

from pvtool.machine.pci import Bar, PciFunction

INTEL, QEMU_VGA_VENDOR = 0x8086, 0x1234
SUBSYSTEM = (0x1AF4, 0x1100)
COMMAND = 0x0103  # I/O space, memory space, SERR# enable
STATUS_DEVSEL_MEDIUM, STATUS_FAST_BACK_TO_BACK = 0x0200, 0x0080
MULTIFUNCTION = 0x80
INTERRUPT_PIN_A = 1

PM_BASE = 0x600  # SeaBIOS's choice for the PIIX4's PMBA (its PORT_ACPI_PM_BASE)
SMBUS_BASE = 0x700
SCI_IRQ = 9  # the PIIX4's power-management interrupt, SCI in ACPI terms
PIRQ_ROUTES = (10, 10, 11, 11)  # PIRQA-D as SeaBIOS routes them (PIIX3 0x60-0x63)
PAM, SMRAM = 0x59, 0x72
PAM_SHADOW = bytes((0x10, 0x11, 0x11, 0x11, 0x11, 0x11, 0x33))
RAM_SIZE_UNIT = 8 << 20  # QEMU's i440FX register 0x57: RAM in 8 MiB units, at most 255

IDE_BUS_MASTER = Bar(4, 16, 0xC000, io=True)
VGA_FRAMEBUFFER = Bar(0, 16 << 20, 0xFD000000, prefetchable=True)
VGA_MMIO = Bar(2, 4096, 0xFEBF0000)
VGA_ROM = Bar(6, 64 << 10, 0xFEBE0000)


def host_bridge(ram_size: int) -> PciFunction:
    """00:00.0, the 82441FX PMC. 0x59-0x5F are the PAM registers as SeaBIOS leaves
    them (BIOS area read from RAM, written to RAM: its shadow), 0x72 SMRAM."""
    return PciFunction(
        0, 0, INTEL, 0x1237, 0x060000, revision=2, command=COMMAND, subsystem=SUBSYSTEM,
        registers={0x57: (1, min(ram_size // RAM_SIZE_UNIT, 255)),
                   PAM: (len(PAM_SHADOW), int.from_bytes(PAM_SHADOW, "little")),
                   SMRAM: (1, 0x0A)},
        writable={PAM: (len(PAM_SHADOW), (1 << 8 * len(PAM_SHADOW)) - 1),
                  SMRAM: (1, 0x78)})


def isa_bridge() -> PciFunction:
    """00:01.0, the 82371SB PIIX3's PCI-to-ISA bridge (multi-function)."""
    return PciFunction(
        1, 0, INTEL, 0x7000, 0x060100, header_type=MULTIFUNCTION, command=COMMAND,
        status=STATUS_DEVSEL_MEDIUM, subsystem=SUBSYSTEM,
        registers={0x4C: (1, 0x4D), 0x4E: (1, 0x03),
                   0x60: (4, int.from_bytes(bytes(PIRQ_ROUTES), "little")),
                   0x69: (1, 0x02), 0x70: (1, 0x80), 0x76: (2, 0x0C0C), 0x78: (1, 0x02),
                   0xA0: (1, 0x08), 0xA8: (1, 0x0F)},
        writable={0x60: (4, 0x8F8F8F8F)})


def ide() -> PciFunction:
    """00:01.1, the PIIX3's IDE controller in legacy mode (programming interface 0x80:
    bus master capable, both channels at their ISA ports); 0x40-0x43 IDETIM with both
    channels' decode enabled."""
    return PciFunction(
        1, 1, INTEL, 0x7010, 0x010180, command=COMMAND,
        status=STATUS_DEVSEL_MEDIUM | STATUS_FAST_BACK_TO_BACK, subsystem=SUBSYSTEM,
        bars=(IDE_BUS_MASTER,), registers={0x40: (4, 0x80008000)},
        writable={0x40: (4, 0xFFFFFFFF)})


def power_management() -> PciFunction:
    """00:01.3, the 82371AB PIIX4's power management function: PMBA (0x40) holds the
    PM block's base with its I/O-space bit, PMREGMISC (0x80) enables it, SMBBA (0x90)
    and SMBHSTCFG (0xD2) the SMBus host; it interrupts on pin A as the SCI."""
    return PciFunction(
        1, 3, INTEL, 0x7113, 0x068000, revision=3, command=COMMAND,
        status=STATUS_DEVSEL_MEDIUM | STATUS_FAST_BACK_TO_BACK, subsystem=SUBSYSTEM,
        interrupt=(SCI_IRQ, INTERRUPT_PIN_A),
        registers={0x40: (4, PM_BASE | 1), 0x5B: (1, 0x02), 0x5F: (1, 0x90),
                   0x63: (1, 0x60), 0x67: (1, 0x08), 0x80: (1, 0x01),
                   0x90: (4, SMBUS_BASE | 1), 0xD2: (1, 0x09)},
        writable={0x40: (4, 0xFFC0), 0x80: (1, 0x01), 0x90: (4, 0xFFF0), 0xD2: (1, 0x0F)})


def vga() -> PciFunction:
    """00:02.0, QEMU's standard VGA (Bochs VBE): a 16 MiB prefetchable framebuffer,
    a 4 KiB MMIO BAR and a 64 KiB expansion ROM (mapped but not enabled)."""
    return PciFunction(
        2, 0, QEMU_VGA_VENDOR, 0x1111, 0x030000, revision=2, command=COMMAND,
        subsystem=SUBSYSTEM, bars=(VGA_FRAMEBUFFER, VGA_MMIO), rom=VGA_ROM)


def default_functions(ram_size: int) -> list[PciFunction]:
    """Bus 0 of `qemu-system-i386 -display none -net none`, in slot order."""
    return [host_bridge(ram_size), isa_bridge(), ide(), power_management(), vga()]
