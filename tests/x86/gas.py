"""GNU binutils as a test oracle: the bytes `as` produces for Intel-syntax source.

Missing binutils skip the test on a developer's machine and fail it in CI
(tests.oracles.require_tool).
"""

import subprocess
from pathlib import Path

from tests.oracles import require_tool

HEADER = (".intel_syntax noprefix",)


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stderr}")


def gnu_object(lines: list[str], mode: int, workdir: Path, name: str = "oracle") -> Path:
    """Assemble `lines` with `as --32/--64`; return the object file."""
    source, obj = workdir / f"{name}.s", workdir / f"{name}.o"
    source.write_text("\n".join([*HEADER, f".code{mode}", *lines]) + "\n")
    _run(require_tool("as"), f"--{mode}", "-o", str(obj), str(source))
    return obj


def section_bytes(path: Path, section: str = ".text") -> bytes:
    """One section of an object or executable, as raw bytes."""
    out = path.with_suffix(path.suffix + section.replace(".", "_") + ".bin")
    _run(require_tool("objcopy"), "-O", "binary", "-j", section, str(path), str(out))
    return out.read_bytes()


def gnu_assemble(lines: list[str], mode: int, workdir: Path) -> bytes:
    """The .text bytes GNU as produces for `lines`."""
    return section_bytes(gnu_object(lines, mode, workdir))


def gnu_link(lines: list[str], workdir: Path, *, text: int, data: int) -> tuple[Path, dict]:
    """Assemble and link a 32-bit program with .text at `text` and .data at `data`;
    return the executable and its symbols (name -> address)."""
    obj = gnu_object(lines, 32, workdir, "program")
    exe = workdir / "program.elf"
    _run(require_tool("ld"), "-m", "elf_i386", "-N", "-e", "_start",
         "-Ttext", hex(text), "-Tdata", hex(data), "-o", str(exe), str(obj))  # fmt: skip
    nm = subprocess.run([require_tool("nm"), str(exe)], capture_output=True, text=True,
                        check=True)  # fmt: skip
    symbols = {}
    for line in nm.stdout.splitlines():
        value, _, name = line.split()
        symbols[name] = int(value, 16)
    return exe, symbols
