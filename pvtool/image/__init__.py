"""Guest image formats: ELF32 reading and writing, Multiboot, Xen ELF notes."""
