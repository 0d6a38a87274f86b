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


def symbols(path: Path) -> dict[str, int]:
    """The symbols of an object or executable (name -> value), as nm lists them."""
    nm = subprocess.run([require_tool("nm"), str(path)], capture_output=True, text=True,
                        check=True)  # fmt: skip
    found = {}
    for line in nm.stdout.splitlines():
        value, _, name = line.split()
        found[name] = int(value, 16)
    return found


def gnu_link(lines: list[str], workdir: Path, *, text: int, data: int) -> tuple[Path, dict]:
    """Assemble and link a 32-bit program with .text at `text` and .data at `data`;
    return the executable and its symbols (name -> address)."""
    obj = gnu_object(lines, 32, workdir, "program")
    exe = workdir / "program.elf"
    _run(require_tool("ld"), "-m", "elf_i386", "-N", "-e", "_start",
         "-Ttext", hex(text), "-Tdata", hex(data), "-o", str(exe), str(obj))  # fmt: skip
    return exe, symbols(exe)
