"""GNU binutils as a test oracle: the bytes `as` produces for Intel-syntax source.

Missing binutils skip the test on a developer's machine and fail it in CI
(tests.oracles.require_tool).
"""

from pathlib import Path

from tests.binutils import IMPURE, assemble, build, section_bytes

HEADER = (".intel_syntax noprefix",)

__all__ = ["gnu_assemble", "gnu_link", "gnu_object", "section_bytes"]


def source(lines: list[str], mode: int) -> str:
    return "\n".join([*HEADER, f".code{mode}", *lines]) + "\n"


def gnu_object(lines: list[str], mode: int, workdir: Path, name: str = "oracle") -> Path:
    """Assemble `lines` with `as --32/--64`; return the object file."""
    return assemble(source(lines, mode), workdir / f"{name}.o", bits=mode)


def gnu_assemble(lines: list[str], mode: int, workdir: Path) -> bytes:
    """The .text bytes GNU as produces for `lines`."""
    return section_bytes(gnu_object(lines, mode, workdir))


def gnu_link(lines: list[str], workdir: Path, *, text: int, data: int) -> tuple[Path, dict]:
    """Assemble and link a 32-bit program with .text at `text` and .data at `data`;
    return the executable and its symbols (name -> address)."""
    program = build(workdir, source(lines, 32), entry="_start", text=text, data=data,
                    flags=IMPURE)
    return program.elf, program.symbols
