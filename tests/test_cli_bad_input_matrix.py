"""Every CLI command x every kind of bad input (issue 7): one line on stderr starting
`pvtool: error:` and the status the README documents (README, "Exit status"), never a
traceback, click's usage text or status 70; nothing is written.

The commands run in process through click's runner. Cells where the input is not bad
for that command (hello has no Xen notes, which `patch` wants; xenhello has no
Multiboot header, which the PV path does not need) are left out; so are the image-kind
cells of diffstat, which reads diffs: an ELF given to it is a usage error (64), text
that is no diff a data error (65), and an empty file an empty diff.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from tests.cli import pvtool
from tests.image.elfs import build_kernel
from tests.oracles import guest_path

COMMANDS = {
    "patch": ["patch", "{input}", "-o", "{out}/patched.elf"],
    "run --native": ["run", "--native", "--quiet", "--max-insns", "100000", "{input}"],
    "run (PV)": ["run", "--quiet", "--max-insns", "100000", "{input}"],
    "run --trap": ["run", "--trap", "--quiet", "--max-insns", "100000", "{input}"],
    "diffstat": ["diffstat", "{input}"],
    "bench": ["bench", "--repeat", "1", "--json", "{out}/bench.json", "{input}"],
}
IMAGE_COMMANDS = ["patch", "run --native", "run (PV)", "run --trap", "bench"]

# kind of bad input -> the README's status for it
STATUS = {
    "missing": 66, "directory": 66, "empty": 65, "not an ELF": 65, "truncated ELF": 65,
    "ELF64": 69, "x86-64 kernel": 69, "wrong machine": 69, "no Multiboot header": 69,
    "no Xen notes": 69, "already patched": 69, "flat Multiboot binary": 69,
}
CELLS = (
    [(command, kind) for command in COMMANDS
     for kind in ("missing", "directory")]
    + [(command, kind) for command in IMAGE_COMMANDS
       for kind in ("empty", "not an ELF", "truncated ELF", "ELF64", "wrong machine")]
    + [(command, "x86-64 kernel") for command in IMAGE_COMMANDS
       if command not in ("patch", "bench")]
    + [("run --native", "no Multiboot header"), ("run --trap", "no Multiboot header"),
       ("run (PV)", "no Xen notes"), ("patch", "already patched")]
    + [(command, "flat Multiboot binary") for command in ("patch", "run (PV)", "bench")]
    + [("diffstat", "not an ELF")]
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("bad-inputs")
    hello = guest_path("hello").read_bytes()
    (where / "a-directory").mkdir()
    (where / "empty.elf").write_bytes(b"")
    (where / "text.elf").write_text("not a kernel, not a diff\n")
    (where / "truncated.elf").write_bytes(hello[:0x1800])
    elf64 = bytearray(hello)
    elf64[4] = 2  # EI_CLASS: ELFCLASS64
    (where / "elf64.elf").write_bytes(bytes(elf64))
    arm = bytearray(hello)
    struct.pack_into("<H", arm, 18, 40)  # e_machine: EM_ARM
    (where / "arm.elf").write_bytes(bytes(arm))
    shutil.copy(guest_path("xenhello"), where / "xenhello.elf")
    shutil.copy(guest_path("hello"), where / "hello.elf")
    # No ELF header: a Multiboot header whose a.out kludge (flag 16) loads the whole
    # file at 1 MiB and enters after the header, then cli; hlt.
    flat = struct.pack("<8I", 0x1BADB002, 0x10000, (-0x1BADB002 - 0x10000) & 0xFFFFFFFF,
                       0x100000, 0x100000, 0, 0, 0x100020) + b"\xfa\xf4"
    (where / "flat.bin").write_bytes(flat)
    return {
        "missing": where / "nothing-here.elf",
        "directory": where / "a-directory",
        "empty": where / "empty.elf",
        "not an ELF": where / "text.elf",
        "truncated ELF": where / "truncated.elf",
        "ELF64": where / "elf64.elf",
        "x86-64 kernel": build_kernel(where, bits=64, name="x86-64"),  # loads, is refused
        "wrong machine": where / "arm.elf",
        "no Multiboot header": where / "xenhello.elf",  # written for Xen: no Multiboot
        "no Xen notes": where / "hello.elf",
        "already patched": where / "xenhello.elf",
        "flat Multiboot binary": where / "flat.bin",
    }


@pytest.mark.parametrize(("command", "kind"), CELLS,
                         ids=[f"{c}-{k}".replace(" ", "_") for c, k in CELLS])
def test_every_command_answers_bad_input_with_one_line_and_its_status(inputs, tmp_path,
                                                                      command, kind):
    path = inputs[kind]
    before = path.read_bytes() if path.is_file() else None
    out = tmp_path / "out"
    out.mkdir()
    args = [a.format(input=path, out=out) for a in COMMANDS[command]]
    result = pvtool(*args)

    expected = 65 if command == "diffstat" and kind == "not an ELF" else STATUS[kind]
    assert result.status == expected, (args, result.status, result.stderr)
    result.error_line()
    assert result.stdout == ""
    assert list(out.iterdir()) == []  # nothing written
    if before is not None:
        assert path.read_bytes() == before


# A well-formed x86-64 kernel loads; every command that cannot take one yet refuses it
# in the one sentence a 64-bit image always got (patch takes it: tests/patch/test_patch64;
# `run --native` boots it on the x86_64 PC: tests/test_run_native64.py; `run --trap` at
# its 64-bit entry: tests/hv/test_trapemulate64.py; bench gives each mode's row:
# tests/bench/test_bench64.py; diffstat takes two images of one width). This one,
# without Multiboot address fields, the two runs refuse as QEMU does.
X86_64_REFUSALS = {command: COMMANDS[command] for command in IMAGE_COMMANDS
                   if command not in ("patch", "run --native", "run --trap", "bench")}


@pytest.mark.parametrize("command", X86_64_REFUSALS)
def test_every_command_refuses_an_x86_64_kernel_in_the_same_words(inputs, tmp_path, command):
    path = inputs["x86-64 kernel"]
    out = tmp_path / "out"
    out.mkdir()
    args = [a.format(input=path, out=out, hello=inputs["no Xen notes"])
            for a in X86_64_REFUSALS[command]]
    result = pvtool(*args)
    assert (result.status, result.stderr) == (69, f"pvtool: error: {path}: 64-bit ELF "
                                                  "(x86-64); only 32-bit x86 images are "
                                                  "supported\n")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("order", ["64-bit original", "64-bit patched"])
def test_diffstat_of_images_of_two_widths_is_one_clear_error(inputs, tmp_path, order):
    wide, narrow = inputs["x86-64 kernel"], inputs["no Xen notes"]
    original, patched = (wide, narrow) if order == "64-bit original" else (narrow, wide)
    result = pvtool("diffstat", original, patched)
    bits = {wide: 64, narrow: 32}
    assert (result.status, result.error_line()) == (
        69, f"pvtool: error: {patched}: a {bits[patched]}-bit image, not a patched copy "
            f"of the {bits[original]}-bit {original}")


@pytest.mark.parametrize("kind", ["truncated ELF", "ELF64", "wrong machine"])
def test_diffstat_given_one_image_is_one_clear_error(inputs, kind):
    """diffstat reads a diff (or two images): one image alone is refused in one line
    with a documented status, whatever the image's own defect."""
    result = pvtool("diffstat", inputs[kind])
    assert result.status in (64, 65), result.stderr
    result.error_line()
