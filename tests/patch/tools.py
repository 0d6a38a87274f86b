"""Small kernels built with the GNU toolchain, and binutils as the oracle that reads
what the patcher wrote (objdump for instructions, readelf for the ELF structure).

Nothing here imports the patcher: a kernel is assembled by as and linked by ld, and
every fact a test checks about an output is read back by binutils or by the few lines
of struct code below (note records, the trap-site table), written from the ELF gABI and
docs/ABI.md rather than from pvtool's own modules.
"""

import functools
import json
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.binutils import build
from tests.binutils import run_tool as run
from tests.oracles import require_tool

TEXT = 0x0010_0000

# The Multiboot header (Multiboot spec 3.1.1: magic, flags, checksum), first in .text so
# it lies in the first 8 KiB of the file whatever ld does with the other sections.
MULTIBOOT = """\
.intel_syntax noprefix
.text
.p2align 2
multiboot_header:
    .long 0x1BADB002, 0, -0x1BADB002
"""

# Addresses of pvtool's Xen ABI that the expected rewrites name (docs/ABI.md, "A fixed
# shared_info mapping": shared_info at 0xFC410000 on 2-level paging; Xen's
# public/xen.h: vcpu_info[0] first in shared_info, evtchn_upcall_mask at offset 1,
# arch.cr2 at offset 8).
VCPU_MASK = 0xFC41_0001
VCPU_CR2 = 0xFC41_0008
# Offsets in pvtool's virtual-CPU register block, the start of .pvdata (docs/ABI.md).
REGS_CR0, REGS_CR3, REGS_CR4, REGS_GDTR, REGS_IDTR, REGS_LDTR = 0, 4, 8, 16, 24, 32
# Xen's hypercall numbers (public/xen.h) and the 32-byte hypercall-page entries.
HC_SET_TRAP_TABLE, HC_SET_GDT, HC_STACK_SWITCH, HC_FPU_TASKSWITCH = 0, 2, 3, 5
HC_XEN_VERSION, HC_IRET, HC_MMUEXT_OP, HC_SCHED_OP, HC_PHYSDEV_OP = 17, 23, 26, 29, 33
HYPERCALL_ENTRY = 32
# Xen ELF note types (public/elfnote.h) and pvtool's (docs/ABI.md).
XEN_ENTRY, XEN_HYPERCALL_PAGE = 1, 2
PVTOOL_TRAP_SITES = 1
TRAP_SITE_SIZE = 24  # u32 address, u8 length, 3 bytes padding, 15 bytes original, pad
# The glue window (docs/ABI.md, "The glue window" and "An identity map while paging is
# off"): .pvdata then .pvtext are linked in [0xFC800000, +4 MiB) and loaded (p_paddr) in
# the PC's low-memory hole [0xA0000, 1 MiB), which ends early at a segment of the
# kernel that reaches into it; the top of the hole holds the PV entry's identity-map
# tables, one L2 and 64 L1s (256 MiB of RAM).
PAGE = 4096
GLUE_WINDOW, GLUE_WINDOW_SIZE = 0xFC80_0000, 4 << 20
HOLE_BASE, HOLE_LIMIT = 0xA_0000, 0x10_0000
IDENTITY_TABLES = 1 + 64


# ---- building kernels ---------------------------------------------------------------


def build_kernel(workdir: Path, body: str, *, data: str = "", name: str = "kernel",
                 script: str | None = None) -> tuple[Path, dict[str, int]]:
    """Assemble BODY (Intel syntax, after the Multiboot header, `_start` must be in it)
    with as --32 and link it with ld -m elf_i386 -Ttext=0x100000 (or with the linker
    SCRIPT); return the ELF and its symbols (name -> address)."""
    text = MULTIBOOT + body + ("\n.data\n" + data if data else "") + "\n"
    kernel = build(workdir, text, name=name, script=script, entry="_start",
                   text=TEXT if script is None else None)
    return kernel.elf, kernel.symbols


# ---- objdump --------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    address: int
    data: bytes
    mnemonic: str
    operands: str

    @property
    def end(self) -> int:
        return self.address + len(self.data)

    @property
    def text(self) -> str:
        return f"{self.mnemonic} {self.operands}".strip()

    @property
    def target(self) -> int | None:
        """The direct target of a jmp/jcc/call/loop, as objdump prints it."""
        if not (self.mnemonic.startswith(("j", "call", "loop"))):
            return None
        match = re.fullmatch(r"(?:0x)?([0-9a-f]+)(?: <.*>)?", self.operands)
        return int(match.group(1), 16) if match else None


_LINE = re.compile(r"^\s*([0-9a-f]+):\t([0-9a-f ]+?)\s*(?:\t(.*))?$")


def objdump(elf: Path, *, section: str | None = None, start: int | None = None,
            stop: int | None = None, symbols: bool = False) -> list[Line]:
    """Every instruction `objdump -d -M intel -w` shows, in address order. objdump
    starts afresh at every symbol, cutting an instruction that spans a label (a detour's
    jmp over the next site's label), so by default it reads a copy stripped of every
    symbol but _start (where code begins after the Multiboot header's bytes)."""
    if not symbols:
        elf = _stripped(elf, elf.stat().st_mtime_ns, elf.stat().st_size)
    command = [require_tool("objdump"), "-d", "-w", "-M", "intel"]
    if section:
        command += ["-j", section]
    if start is not None:
        command.append(f"--start-address={start:#x}")
    if stop is not None:
        command.append(f"--stop-address={stop:#x}")
    lines = []
    for raw in run(*command, str(elf)).stdout.splitlines():
        match = _LINE.match(raw)
        if not match:
            continue
        address, data, text = match.groups()
        text = re.sub(r"\s+", " ", (text or "").strip())
        mnemonic, _, operands = text.partition(" ")
        lines.append(Line(int(address, 16), bytes.fromhex(data.replace(" ", "")),
                          mnemonic, operands))
    return lines


_STRIPPED = tempfile.TemporaryDirectory(prefix="pvtool-test-objdump-")  # gone at exit


@functools.lru_cache(maxsize=256)
def _stripped(elf: Path, mtime: int, size: int) -> Path:
    folder = Path(tempfile.mkdtemp(dir=_STRIPPED.name))
    copy = folder / elf.name
    run(require_tool("objcopy"), "--strip-all", "--keep-symbol=_start", str(elf), str(copy))
    return copy


def by_address(lines: list[Line]) -> dict[int, Line]:
    return {line.address: line for line in lines}


def branch_targets(elf: Path) -> set[int]:
    """Every direct target of a jmp/jcc/call/loop in the code, by objdump."""
    return {line.target for line in objdump(elf) if line.target is not None}


# ---- readelf --------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    type: str
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    flags: str


@dataclass(frozen=True)
class SectionHeader:
    name: str
    type: str
    address: int
    offset: int
    size: int
    flags: str


def segments(elf: Path) -> list[Segment]:
    out = run(require_tool("readelf"), "-lW", str(elf)).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 7 and parts[1].startswith("0x") and parts[0].isupper():
            # Type Offset VirtAddr PhysAddr FileSiz MemSiz Flg... Align
            flags = "".join(parts[6:-1])
            found.append(Segment(parts[0], int(parts[1], 16), int(parts[2], 16),
                                 int(parts[3], 16), int(parts[4], 16), int(parts[5], 16),
                                 flags))
    return found


def sections(elf: Path) -> dict[str, SectionHeader]:
    out = run(require_tool("readelf"), "-SW", str(elf)).stdout
    found = {}
    for line in out.splitlines():
        match = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+([0-9a-f]{16}|[0-9a-f]{8})\s+"
                         r"([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([A-Za-z]*)\s", line)
        if match:
            name, kind, address, offset, size, flags = match.groups()
            found[name] = SectionHeader(name, kind, int(address, 16), int(offset, 16),
                                        int(size, 16), flags)
    return found


# ELF32 header fields (gABI): e_shoff (4 bytes), e_shnum and e_shstrndx (2 bytes each)
_SHOFF, _SHNUM, _SHSTRNDX = 0x20, 0x30, 0x32


def without_section_headers(elf: Path, out: Path) -> Path:
    """A copy of the ELF32 ELF that says it has no section headers (as a stripped
    kernel image may): only its program headers say what is code."""
    data = bytearray(elf.read_bytes())
    data[_SHOFF : _SHOFF + 4] = bytes(4)
    data[_SHNUM : _SHNUM + 2] = data[_SHSTRNDX : _SHSTRNDX + 2] = bytes(2)
    out.write_bytes(data)
    return out


def read_virtual(elf: Path, address: int, size: int) -> bytes:
    """SIZE bytes a loader puts at ADDRESS, from the file's PT_LOAD entries."""
    data = elf.read_bytes()
    for seg in segments(elf):
        if seg.type == "LOAD" and seg.vaddr <= address and address + size <= seg.vaddr + seg.filesz:
            offset = seg.offset + address - seg.vaddr
            return data[offset:offset + size]
    raise AssertionError(f"{address:#x}+{size} is not in the file bytes of one PT_LOAD")


def notes(elf: Path) -> list[tuple[bytes, int, bytes]]:
    """(owner, type, desc) of every note record in the PT_NOTE segments (gABI layout:
    namesz, descsz, type, then the name and the descriptor, each padded to 4 bytes)."""
    data = elf.read_bytes()
    records = []
    for seg in segments(elf):
        if seg.type != "NOTE":
            continue
        blob = data[seg.offset:seg.offset + seg.filesz]
        position = 0
        while position + 12 <= len(blob):
            namesz, descsz, kind = struct.unpack_from("<III", blob, position)
            position += 12
            name = blob[position:position + namesz].rstrip(b"\0")
            position += -(-namesz // 4) * 4
            desc = blob[position:position + descsz]
            position += -(-descsz // 4) * 4
            records.append((name, kind, desc))
    return records


def note(elf: Path, owner: bytes, kind: int) -> bytes:
    found = [desc for name, k, desc in notes(elf) if name == owner and k == kind]
    assert len(found) == 1, f"{len(found)} {owner!r} notes of type {kind} in {elf}"
    return found[0]


@dataclass(frozen=True)
class TrapEntry:
    address: int
    length: int
    original: bytes


def trap_table(elf: Path) -> list[TrapEntry]:
    """The trap-site table the pvtool note of type 1 points at (docs/ABI.md)."""
    address, count = struct.unpack("<II", note(elf, b"pvtool", PVTOOL_TRAP_SITES))
    raw = read_virtual(elf, address, count * TRAP_SITE_SIZE) if count else b""
    entries = []
    for i in range(count):
        entry = raw[i * TRAP_SITE_SIZE:(i + 1) * TRAP_SITE_SIZE]
        site, length = struct.unpack_from("<IB", entry)
        entries.append(TrapEntry(site, length, entry[8:8 + length]))
    return entries


# ---- the patcher's outputs ----------------------------------------------------------


def report(out: Path) -> dict:
    return json.loads(out.with_suffix(".json").read_text())


def sites_by_class(rep: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for site in rep["sites"]:
        found.setdefault(site["class"], []).append(site)
    return found


def address(site: dict) -> int:
    return int(site["address"], 16)


def stub_ranges(out: Path, rep: dict) -> dict[int, tuple[int, int]]:
    """Stub address -> [start, end) of its code in .pvtext: stubs follow one another,
    and the last ends where the trap-site table starts (or .pvtext ends)."""
    stubs = sorted({int(s["stub"], 16) for s in rep["sites"] if s["stub"]})
    text = sections(out)[".pvtext"]
    table, _ = struct.unpack("<II", note(out, b"pvtool", PVTOOL_TRAP_SITES))
    ends = stubs[1:] + [min(table, text.address + text.size)]
    return dict(zip(stubs, zip(stubs, ends, strict=True), strict=True))


def stub_code(out: Path, rep: dict, stub: int) -> list[Line]:
    start, end = stub_ranges(out, rep)[stub]
    return objdump(out, section=".pvtext", start=start, stop=end)


def changed_ranges(original: Path, out: Path, rep: dict) -> list[tuple[int, int, str]]:
    """[start, end) of the original code each site's placement may change, read from
    the output: a detour from the jmp that enters its stub to the address the stub's
    last jmp returns to; a trap site from its table entry; an in-place site over the
    original instruction (objdump of the input). Kept sites change nothing."""
    text = objdump(out, section=".text")
    jumps_to = {line.target: line.address for line in text if line.mnemonic == "jmp"}
    traps = {entry.address: entry for entry in trap_table(out)}
    before = by_address(objdump(original))
    ranges = set()
    for site in rep["sites"]:
        at = address(site)
        if site["placement"] == "detour":
            stub = int(site["stub"], 16)
            back = stub_code(out, rep, stub)[-1]
            assert back.mnemonic == "jmp", f"stub {stub:#x} ends with {back.text}"
            ranges.add((jumps_to[stub], back.target, "detour"))
        elif site["placement"] == "trap":
            ranges.add((at, at + traps[at].length, "trap"))
        elif site["placement"] == "in-place":
            ranges.add((at, before[at].end, "in-place"))
    return sorted(ranges)


class Glue:
    """The code of an output's .pvtext as objdump decodes it, walked from a function's
    entry through its jumps and calls: which hypercall-page entries it reaches and what
    its instructions name."""

    def __init__(self, out: Path):
        text = sections(out)[".pvtext"]
        self.page = struct.unpack("<I", note(out, b"Xen", XEN_HYPERCALL_PAGE))[0]
        self.start, self.end = text.address, text.address + text.size
        self.lines = objdump(out, section=".pvtext")
        self.index = {line.address: i for i, line in enumerate(self.lines)}

    def in_page(self, address: int) -> bool:
        return self.page <= address < self.page + 4096

    def contains(self, address: int) -> bool:
        return self.start <= address < self.end and not self.in_page(address)

    def walk(self, entry: int) -> list[Line]:
        """Every instruction reachable from ENTRY without leaving the glue."""
        seen, reached, work = set(), [], [entry]
        while work:
            i = self.index[work.pop()]
            while i < len(self.lines) and self.lines[i].address not in seen:
                line = self.lines[i]
                seen.add(line.address)
                reached.append(line)
                if line.target is not None and self.contains(line.target):
                    work.append(line.target)
                if line.mnemonic in ("ret", "jmp", "iret", "iretd"):
                    break
                i += 1
        return reached

    def hypercalls(self, entry: int) -> set[int]:
        """Numbers of the hypercall-page entries reached from ENTRY."""
        return {(line.target - self.page) // HYPERCALL_ENTRY for line in self.walk(entry)
                if line.target is not None and self.in_page(line.target)}

    def names(self, entry: int, value: int) -> bool:
        """Whether an instruction reached from ENTRY has VALUE as an operand."""
        return any(re.search(rf"\b{value:#x}\b", line.operands) for line in self.walk(entry))


# ---- the glue window ------------------------------------------------------------------


def hole_limit(original: Path) -> int:
    """Where the low-memory hole ends for ORIGINAL: at 1 MiB, or at the page that holds
    the start of the lowest PT_LOAD of the kernel reaching into [0xA0000, 1 MiB) (ld puts
    the ELF headers at 0xFF000 by default). Read from readelf's physical addresses."""
    limit = HOLE_LIMIT
    for seg in segments(original):
        if (seg.type == "LOAD" and seg.memsz and seg.paddr < limit
                and seg.paddr + seg.memsz > HOLE_BASE):
            limit = seg.paddr & ~(PAGE - 1)
    return limit


def identity_tables(original: Path) -> tuple[int, int]:
    """[start, end) of the identity-map tables' frames: the top of the hole."""
    end = hole_limit(original)
    return end - IDENTITY_TABLES * PAGE, end


def glue_segments(original: Path, out: Path) -> tuple[Segment, Segment]:
    """The PT_LOAD segments of .pvdata and .pvtext in OUT, checked against the glue
    window's invariants; every original PT_LOAD is kept as it was."""
    loads = [s for s in segments(out) if s.type == "LOAD"]
    original_loads = [s for s in segments(original) if s.type == "LOAD"]
    assert all(s in loads for s in original_loads)
    added = [s for s in loads if s not in original_loads]
    assert len(added) == 2, added
    found = sections(out)
    pvdata, pvtext = (next(s for s in added if s.vaddr == found[name].address)
                      for name in (".pvdata", ".pvtext"))
    assert (pvdata.flags, pvtext.flags) == ("RW", "RE")
    # linked in the window, .pvdata first at its start, .pvtext after it
    assert pvdata.vaddr == GLUE_WINDOW
    assert pvtext.vaddr >= pvdata.vaddr + pvdata.memsz
    assert pvtext.vaddr + pvtext.memsz <= GLUE_WINDOW + GLUE_WINDOW_SIZE
    # loaded in the hole, below the kernel's own segments there and the identity tables
    tables, _ = identity_tables(original)
    for seg in (pvdata, pvtext):
        assert seg.vaddr % PAGE == 0 and seg.paddr % PAGE == 0 and seg.offset % PAGE == 0
        assert seg.paddr >= HOLE_BASE and seg.paddr + seg.memsz <= tables, (
            f"{seg.paddr:#x}+{seg.memsz:#x} is not in [{HOLE_BASE:#x}, {tables:#x})")
    assert not _pages_overlap(pvdata.paddr, pvdata.memsz, pvtext.paddr, pvtext.memsz)
    for seg in original_loads:
        for glue in (pvdata, pvtext):
            assert not _pages_overlap(seg.paddr, seg.memsz, glue.paddr, glue.memsz)
    return pvdata, pvtext


def _pages_overlap(a: int, a_size: int, b: int, b_size: int) -> bool:
    first = max(a // PAGE, b // PAGE)
    last = min((a + a_size - 1) // PAGE, (b + b_size - 1) // PAGE)
    return a_size > 0 and b_size > 0 and first <= last
