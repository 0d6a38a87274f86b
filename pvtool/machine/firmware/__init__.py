"""What the PC's firmware leaves in memory before it hands over to a kernel: the data
(never the code) that QEMU's SeaBIOS and its option ROMs write during POST, and the
tables (MP, ACPI, SMBIOS) a kernel finds there."""
