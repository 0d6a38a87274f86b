"""Build the tests' small guests with GNU as and ld (binutils are the oracle's tools).

A guest is runtime.s (Multiboot header, GDT, masked PICs, empty IDT, records printed
on COM1, isa-debug-exit) linked at 1 MiB with one scenario that defines `test_main`.
Scenarios `.include "macros.inc"` for SETGATE, REC and UNMAP. Builds are cached by
source text for the whole session (tests.binutils.build_once).
"""

from pathlib import Path

from tests.binutils import IMPURE, Binary, build_once, section_bytes

HERE = Path(__file__).resolve().parent
RUNTIME = HERE / "runtime.s"
RUNTIME64 = HERE / "runtime64.s"  # an ELF64 kernel that enters long mode itself
LINK_ADDRESS = 0x100000

Guest = Binary  # the ELF and its symbols

# The start of a guest built without the runtime: a Multiboot header (magic, flags 0x3:
# modules page-aligned and memory information, checksum; Multiboot spec 3.1.1) and the
# entry point, whose code follows.
BARE = """
    .text
    .long 0x1BADB002, 0x3, -(0x1BADB002 + 0x3)
    .globl _start
_start:
"""


class GuestBuilder:
    """Assembles scenarios into Multiboot ELFs under `workdir`, once per source."""

    def __init__(self, workdir: Path):
        self.workdir = workdir

    def build(self, scenario: str, *, runtime: bool = True, entry: str = "_start",
              text: int = LINK_ADDRESS, ld_args: tuple[str, ...] = ()) -> Guest:
        """Link `scenario` (after the runtime unless runtime=False) with .text at
        `text` (1 MiB by default)."""
        sources = (RUNTIME.read_text(), scenario) if runtime else (scenario,)
        return build_once(self.workdir, *sources, include=(HERE,), entry=entry, text=text,
                          flags=(*IMPURE, "--build-id=none", *ld_args))

    def build64(self, scenario: str) -> Guest:
        """Link `scenario` after runtime64.s into an ELF64 Multiboot kernel at 1 MiB."""
        return build_once(self.workdir, RUNTIME64.read_text(), scenario, include=(HERE,),
                          bits=64, entry="_start", text=LINK_ADDRESS,
                          flags=(*IMPURE, "--build-id=none", "-z", "max-page-size=0x1000"))

    def flat(self, source: str, address: int) -> tuple[bytes, dict[str, int]]:
        """Raw code for `source` (no runtime) linked at `address`, and its symbols."""
        guest = self.build(source, runtime=False, entry=f"{address:#x}", text=address)
        return section_bytes(guest.elf), guest.symbols
