"""Test binaries built with GNU binutils, the suite's one builder: assembly in, an
executable and its symbols out, made by the real tools (`as`, `ld`) and read back by
them (`nm`, `objcopy`), never by pvtool.

Every helper that builds a kernel, a guest or a few instructions for a test calls
`build()` (or `build_once()`, which keeps one build per distinct input for the whole
session). What the callers do differently is a parameter: 32- or 64-bit (`as --32`,
`ld -m elf_i386`; `as --64`, `ld -m elf_x86_64`), a linker script or sections placed
at an address, the entry symbol, include folders, and ld's flags. Missing binutils
skip the test on a developer's machine and fail it in CI (tests.oracles.require_tool).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.oracles import require_tool

# `as` and `ld` options for each word size.
ARCH = {32: ("--32", "elf_i386"), 64: ("--64", "elf_x86_64")}
# A freestanding kernel as the Makefile links the guests (GUEST_LDFLAGS): no libc, no
# build-id note, a stack marked non-executable.
KERNEL_FLAGS = ("-nostdlib", "--build-id=none", "-z", "noexecstack")
# -N: text and data in one writable segment, not page-aligned (small images whose
# addresses a test states exactly).
IMPURE = ("-N",)


@dataclass(frozen=True)
class Binary:
    """An executable that ld wrote, and its symbols as nm lists them."""

    elf: Path
    symbols: dict[str, int] = field(hash=False)

    def __getitem__(self, name: str) -> int:
        return self.symbols[name]


def run_tool(*command: object) -> subprocess.CompletedProcess:
    """Run a binutils command (text output); fail the test with its stderr if it fails."""
    words = [str(word) for word in command]
    done = subprocess.run(words, capture_output=True, text=True, check=False)
    if done.returncode:
        raise AssertionError(f"{' '.join(words)} failed:\n{done.stderr}")
    return done


def assemble(source: str, obj: Path, *, bits: int = 32,
             include: Sequence[Path] = ()) -> Path:
    """`as --32/--64` SOURCE (written beside OBJ as .s) into the object OBJ."""
    path = obj.with_suffix(".s")
    path.write_text(source)
    includes = [arg for folder in include for arg in ("-I", folder)]
    run_tool(require_tool("as"), ARCH[bits][0], *includes, "-o", obj, path)
    return obj


def link(objects: Sequence[Path], out: Path, *, bits: int = 32, script: str | None = None,
         entry: str | None = None, text: int | None = None, data: int | None = None,
         flags: Sequence[str] = ()) -> Path:
    """`ld -m elf_i386/elf_x86_64` OBJECTS into OUT, with the linker SCRIPT (written
    beside OUT as .ld) or ld's default, ENTRY, .text and .data at TEXT and DATA."""
    options = ["-m", ARCH[bits][1], *flags]
    if script is not None:
        script_path = out.with_suffix(".ld")
        script_path.write_text(script)
        options += ["-T", script_path]
    if entry is not None:
        options += ["-e", entry]
    if text is not None:
        options += ["-Ttext", hex(text)]
    if data is not None:
        options += ["-Tdata", hex(data)]
    run_tool(require_tool("ld"), *options, "-o", out, *objects)
    return out


def symbols(elf: Path) -> dict[str, int]:
    """Defined symbols, name -> value, as `nm` lists them."""
    table = {}
    for line in run_tool(require_tool("nm"), elf).stdout.splitlines():
        fields = line.split()
        if len(fields) == 3:  # an undefined symbol ("U name") has no value
            table[fields[2]] = int(fields[0], 16)
    return table


def section_bytes(path: Path, section: str = ".text") -> bytes:
    """One section of an object or executable as raw bytes (`objcopy -O binary`)."""
    out = path.with_suffix(path.suffix + section.replace(".", "_") + ".bin")
    run_tool(require_tool("objcopy"), "-O", "binary", "-j", section, path, out)
    return out.read_bytes()


def build(workdir: Path, *sources: str, name: str = "program", bits: int = 32,
          include: Sequence[Path] = (), **layout) -> Binary:
    """Assemble each of SOURCES into an object and link them into WORKDIR/NAME.elf
    (`layout`: link()'s script, entry, text, data and flags)."""
    workdir.mkdir(parents=True, exist_ok=True)
    objects = [assemble(source, workdir / f"{name}{index or ''}.o", bits=bits,
                        include=include)
               for index, source in enumerate(sources)]
    elf = link(objects, workdir / f"{name}.elf", bits=bits, **layout)
    return Binary(elf, symbols(elf))


_built: dict[Path, Binary] = {}


def build_once(workdir: Path, *sources: str, **options) -> Binary:
    """build() into a folder of WORKDIR named by the inputs, once per session: the ELF
    is renamed into place last, so a folder that holds it holds a whole build."""
    key = hashlib.sha256(repr((sources, sorted(options.items()))).encode()).hexdigest()
    elf = workdir / key[:16] / "program.elf"
    if elf not in _built:
        if elf.exists():
            _built[elf] = Binary(elf, symbols(elf))
        else:
            parts = build(elf.parent / "parts", *sources, **options)
            parts.elf.rename(elf)
            _built[elf] = Binary(elf, parts.symbols)
    return _built[elf]
