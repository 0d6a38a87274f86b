"""GNU binutils as a test oracle: the bytes `as` produces for Intel-syntax source.

Missing binutils skip the test on a developer's machine and fail it in CI
(tests.oracles.require_tool).
"""

from pathlib import Path

from tests.binutils import IMPURE, assemble, build, section_bytes, symbols

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


def _placed(pieces: list[tuple[int, list[str]]]) -> list[str]:
    """Each piece's lines at its address: `.org` from a section at 0, so the offset of a
    byte is its address and labels in one piece are seen from every other."""
    return [line for at, part in sorted(pieces) for line in (f".org {at:#x}", *part)]


def gnu_assemble_at(pieces: list[tuple[int, list[str]]], mode: int, workdir: Path) -> bytes:
    """The .text GNU as produces with each piece placed at its address."""
    return gnu_assemble(_placed(pieces), mode, workdir)


def gnu_window(window: list[str], at: int, mode: int, workdir: Path,
               placed: list[tuple[int, list[str]]] = ()) -> bytes:
    """The bytes of WINDOW as GNU as places it at AT, with the PLACED pieces (labels and
    what they hold) at their own addresses."""
    obj = gnu_object(_placed([(at, [*window, "window_end:"]), *placed]), mode, workdir)
    return section_bytes(obj)[at : symbols(obj)["window_end"]]


def gnu_link(lines: list[str], workdir: Path, *, text: int, data: int) -> tuple[Path, dict]:
    """Assemble and link a 32-bit program with .text at `text` and .data at `data`;
    return the executable and its symbols (name -> address)."""
    program = build(workdir, source(lines, 32), entry="_start", text=text, data=data,
                    flags=IMPURE)
    return program.elf, program.symbols
