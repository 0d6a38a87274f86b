"""Build the tests' small guests with GNU as and ld (binutils are the oracle's tools).

A guest is runtime.s (Multiboot header, GDT, masked PICs, empty IDT, records printed
on COM1, isa-debug-exit) linked at 1 MiB with one scenario that defines `test_main`.
Scenarios `.include "macros.inc"` for SETGATE, REC and UNMAP. Builds are cached by
source text for the whole session.
"""

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.oracles import require_tool

HERE = Path(__file__).resolve().parent
RUNTIME = HERE / "runtime.s"
LINK_ADDRESS = 0x100000


@dataclass(frozen=True)
class Guest:
    elf: Path
    symbols: dict[str, int]

    def __getitem__(self, name: str) -> int:
        return self.symbols[name]


def run_tool(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stderr}")


def symbols_of(elf: Path) -> dict[str, int]:
    nm = subprocess.run([require_tool("nm"), str(elf)], capture_output=True, text=True,
                        check=True)
    table = {}
    for line in nm.stdout.splitlines():
        value, _, name = line.split()
        table[name] = int(value, 16)
    return table


class GuestBuilder:
    """Assembles scenarios into Multiboot ELFs under `workdir`, once per source."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self._cache: dict[tuple, Guest] = {}

    def _assemble(self, source: str, name: str) -> Path:
        src, obj = self.workdir / f"{name}.s", self.workdir / f"{name}.o"
        src.write_text(source)
        run_tool(require_tool("as"), "--32", "-I", str(HERE), "-o", str(obj), str(src))
        return obj

    def build(self, scenario: str, *, runtime: bool = True, entry: str = "_start",
              text: int = LINK_ADDRESS, ld_args: tuple[str, ...] = ()) -> Guest:
        """Link `scenario` (after the runtime unless runtime=False) with .text at
        `text` (1 MiB by default)."""
        key = (scenario, runtime, entry, text, ld_args)
        if key in self._cache:
            return self._cache[key]
        name = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
        objects = [self._assemble(scenario, name)]
        if runtime:
            objects.insert(0, self._assemble(RUNTIME.read_text(), f"{name}-runtime"))
        elf = self.workdir / f"{name}.elf"
        run_tool(require_tool("ld"), "-m", "elf_i386", "-N", "--build-id=none",
                 "-e", entry, "-Ttext", hex(text), *ld_args, "-o", str(elf),
                 *map(str, objects))
        guest = Guest(elf, symbols_of(elf))
        self._cache[key] = guest
        return guest

    def flat(self, source: str, address: int) -> tuple[bytes, dict[str, int]]:
        """Raw code for `source` (no runtime) linked at `address`, and its symbols."""
        guest = self.build(source, runtime=False, entry=f"{address:#x}", text=address)
        binary = guest.elf.with_suffix(".bin")
        run_tool(require_tool("objcopy"), "-O", "binary", "-j", ".text", str(guest.elf),
                 str(binary))
        return binary.read_bytes(), guest.symbols
