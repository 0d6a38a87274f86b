"""Loader and patcher fuzzing (issue 7): mutations of hello.elf through `pvtool patch`
and `pvtool run --native`.

Each command either succeeds (a patch is then verified by the patcher itself, which
always runs its verification before writing) or exits with one of the README's
statuses and exactly one line on stderr starting `pvtool: error:`; never a traceback or
status 70. The input file is never changed, and a failed patch leaves nothing behind:
no output, no listing diff or report, no temporary file.

The commands run in process (tests.cli.pvtool; of CPU, a patch takes ~0.04 s once
keystone's checked encodings are cached, a bounded run ~0.02 s), so a few hundred
mutations fit in well under a minute.

The images are split into SHARDS tests that pytest-xdist runs side by side (`make
fuzz` runs `-n 2`: ten thousand images on two cores): each shard its share of the
count and its own hypothesis seed (PVTOOL_FUZZ_SEED + shard, so a campaign can be
run again exactly; a random base without it) and, in a campaign, its own example
database, so the shards try distinct images.
"""

from __future__ import annotations

import os
import random
import struct
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from tests import campaign
from tests.campaign import Figures
from tests.cli import pvtool
from tests.oracles import guest_path
from tests.profiles import CAMPAIGN_DATABASE, examples, in_campaign

ERROR_STATUSES = {64, 65, 66, 69, 71, 73, 76, 78, 79}  # README, "Exit status"
PATCH_FAILURES = {65, 69, 76}
EHDR = 52
PHENT, SHENT = 32, 40
INTERESTING = [0, 1, 4, 0x34, 0x1000, 0x2000, 0xFFF, 0x100000, 0x101000, 0x7FFFFFFF,
               0x80000000, 0xFC000000, 0xFFFFF000, 0xFFFFFFFF, 0xFFFFFFF0]
# (offset in the ELF header, struct format): e_type .. e_shstrndx
EHDR_FIELDS = [(16, "H"), (18, "H"), (20, "I"), (24, "I"), (28, "I"), (32, "I"), (36, "I"),
               (40, "H"), (42, "H"), (44, "H"), (46, "H"), (48, "H"), (50, "H")]
# p_type p_offset p_vaddr p_paddr p_filesz p_memsz p_flags p_align
PHDR_FIELDS = [0, 4, 8, 12, 16, 20, 24, 28]
SHDR_FIELDS = [0, 4, 8, 12, 16, 20, 24, 28, 32, 36]

# full strength; a tenth on a developer's machine; ten thousand images for `make fuzz`
MAX_EXAMPLES = examples(300, campaign=10_000)
SHARDS = 2  # one a core: `make fuzz` runs pytest-xdist with two workers
PROGRESS = 500  # images of one shard between two of its progress lines
SEED_BASE = int(os.environ.get("PVTOOL_FUZZ_SEED") or random.SystemRandom().getrandbits(32))


def share(shard: int) -> int:
    """Shard SHARD's part of MAX_EXAMPLES (the first ones take the remainder)."""
    return MAX_EXAMPLES // SHARDS + (shard < MAX_EXAMPLES % SHARDS)


def header(data: bytes):
    (phoff, shoff) = struct.unpack_from("<II", data, 28)
    (phnum,) = struct.unpack_from("<H", data, 44)
    (shnum,) = struct.unpack_from("<H", data, 48)
    return phoff, phnum, shoff, shnum


def segments(data: bytes):
    phoff, phnum, _, _ = header(data)
    return [struct.unpack_from("<8I", data, phoff + i * PHENT) for i in range(phnum)]


# -- mutations: each a function of (bytearray, draw) ----------------------------------------
def put(data: bytearray, offset: int, fmt: str, value: int) -> None:
    size = struct.calcsize("<" + fmt)
    if offset >= 0 and offset + size <= len(data):
        struct.pack_into("<" + fmt, data, offset, value & ((1 << 8 * size) - 1))


def number(draw, limit: int = 0xFFFFFFFF) -> int:
    return draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, limit)))


def truncate(data, draw):
    del data[draw(st.integers(0, len(data))):]


def flip_header_bytes(data, draw):
    phoff, phnum, shoff, shnum = header(data)
    regions = [(0, EHDR), (phoff, phoff + phnum * PHENT), (shoff, shoff + shnum * SHENT)]
    start, end = draw(st.sampled_from(regions))
    for _ in range(draw(st.integers(1, 4))):
        offset = draw(st.integers(start, max(start, end - 1)))
        if offset < len(data):
            data[offset] ^= 1 << draw(st.integers(0, 7))


def ehdr_field(data, draw):
    offset, fmt = draw(st.sampled_from(EHDR_FIELDS))
    put(data, offset, fmt, number(draw, 0xFFFF if fmt == "H" else 0xFFFFFFFF))


def phdr_field(data, draw):
    """An absurd offset, address or size in one program header."""
    phoff, phnum, _, _ = header(data)
    index = draw(st.integers(0, max(phnum - 1, 0)))
    put(data, phoff + index * PHENT + draw(st.sampled_from(PHDR_FIELDS)), "I",
        number(draw))


def overlap_segments(data, draw):
    """Move one PT_LOAD onto (or into) another."""
    segs = segments(data)
    loads = [i for i, s in enumerate(segs) if s[0] == 1]
    a, b = draw(st.permutations(loads))[:2]
    phoff = header(data)[0]
    shift = draw(st.sampled_from([0, 0x10, 0x800, 0x1000]))
    put(data, phoff + a * PHENT + 8, "I", segs[b][2] + shift)
    put(data, phoff + a * PHENT + 12, "I", segs[b][3] + shift)


def random_code(data, draw):
    """Random bytes over part of the executable segment."""
    text = next(s for s in segments(data) if s[0] == 1 and s[6] & 1)
    if text[4] == 0:
        return
    start = text[1] + draw(st.integers(0, text[4] - 1))
    junk = draw(st.binary(min_size=1, max_size=512))
    data[start:start + len(junk)] = junk[:max(0, len(data) - start)]


def strip_symbols(data, draw):
    """No section headers at all, or the symbol table's type erased."""
    _, _, shoff, shnum = header(data)
    if draw(st.booleans()):
        put(data, 32, "I", 0)  # e_shoff
        put(data, 48, "H", 0)  # e_shnum
        put(data, 50, "H", 0)  # e_shstrndx
    else:
        for i in range(shnum):
            if struct.unpack_from("<I", data, shoff + i * SHENT + 4)[0] == 2:  # SHT_SYMTAB
                put(data, shoff + i * SHENT + 4, "I", 0)


def shdr_field(data, draw):
    _, _, shoff, shnum = header(data)
    index = draw(st.integers(0, max(shnum - 1, 0)))
    put(data, shoff + index * SHENT + draw(st.sampled_from(SHDR_FIELDS)), "I", number(draw))


def identity(data, draw):
    data[4] = draw(st.sampled_from([0, 1, 2, 3]))  # EI_CLASS
    data[5] = draw(st.sampled_from([1, 1, 2]))  # EI_DATA


MUTATIONS = [truncate, flip_header_bytes, ehdr_field, phdr_field, phdr_field,
             overlap_segments, random_code, random_code, strip_symbols, shdr_field, identity]


HELLO = guest_path("hello")


@st.composite
def mutated(draw) -> tuple[bytes, list[str]]:
    data = bytearray(HELLO.read_bytes())
    names = []
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        if len(data) < EHDR:
            break
        try:
            mutation(data, draw)
        except (struct.error, StopIteration, ValueError):
            continue  # a previous mutation left nothing this one can aim at
        names.append(mutation.__name__)
    return bytes(data), names


# -- the checks ----------------------------------------------------------------------------
class Tally:
    outcomes: dict[str, int] = {}


def note(command: str, status: int) -> None:
    key = f"{command}:{status}"
    Tally.outcomes[key] = Tally.outcomes.get(key, 0) + 1


def check_failure(result, command: str) -> None:
    assert "Traceback" not in (result.stderr + result.stdout), result.stderr
    assert result.status != 70, f"{command}: internal error: {result.stderr}"
    assert result.status in ERROR_STATUSES, (command, result.status, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pvtool: error: "), \
        f"{command} exited {result.status} with stderr {result.stderr!r}"


def patch_checks(folder: Path, image: Path, original: bytes) -> None:
    out = folder / "out.elf"
    result = pvtool("patch", image, "-o", out)
    note("patch", result.status)
    assert image.read_bytes() == original, "patch changed its input"
    left = sorted(p.name for p in folder.iterdir())
    if result.status == 0:
        assert left == ["in.elf", "out.diff", "out.elf", "out.json"], left
        assert "verified" in result.stdout.lower() or out.stat().st_size > 0
    else:
        check_failure(result, "patch")
        assert result.status in PATCH_FAILURES, (result.status, result.stderr)
        assert left == ["in.elf"], f"patch left {left} after: {result.stderr}"


def run_checks(folder: Path, image: Path, original: bytes) -> None:
    result = pvtool("run", "--native", "--quiet", "--max-insns", "200000", "--timeout", "5",
                    image)
    note("run", result.status)
    assert image.read_bytes() == original, "run changed its input"
    assert sorted(p.name for p in folder.iterdir()) == ["in.elf"]
    if result.status in ERROR_STATUSES:
        check_failure(result, "run --native")
    else:  # the guest chose its exit status: pvtool printed nothing of its own
        assert "Traceback" not in result.stderr
        assert "pvtool: error" not in result.stderr, result.stderr


@pytest.mark.parametrize("shard", range(SHARDS))
def test_mutated_images_get_a_result_or_one_clear_error(shard):
    started = time.perf_counter()
    images = 0
    Tally.outcomes = {}
    where = f"images shard {shard + 1}/{SHARDS} (seed {SEED_BASE + shard})"
    database = ({"database": DirectoryBasedExampleDatabase(
        str(CAMPAIGN_DATABASE / f"images-{shard}"))} if in_campaign() else {})

    @seed(SEED_BASE + shard)
    @settings(max_examples=share(shard), suppress_health_check=list(HealthCheck), **database)
    @given(mutated())
    def fuzz(case):
        nonlocal images
        data, _names = case
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            image = folder / "in.elf"
            image.write_bytes(data)
            os.utime(image, ns=(1_000_000_000, 1_000_000_000))
            run_checks(folder, image, data)
            patch_checks(folder, image, data)
            assert image.stat().st_mtime_ns == 1_000_000_000
            images += 1
            Figures.images += 1
            Figures.commands += 2
            Figures.invariants += 2  # after each command
            if images % PROGRESS == 0:
                campaign.progress(f"{where}: {images:,} mutated images in "
                                  f"{time.perf_counter() - started:,.0f} s; "
                                  f"{campaign.summary()}")

    fuzz()
    elapsed = time.perf_counter() - started
    campaign.progress(f"{where}: {images:,} images ({2 * images:,} commands) in "
                      f"{elapsed:.1f} s: {sorted(Tally.outcomes.items())}")


def test_a_segment_loaded_above_its_virtual_address_is_refused_by_patch(tmp_path):
    """Found by the fuzzer: the highest segment's paddr above its vaddr made Xen's
    VIRT_BASE negative, and `pvtool patch` died with an internal error (status 70)."""
    data = bytearray(HELLO.read_bytes())
    phoff = header(data)[0]
    last = max((i for i, s in enumerate(segments(data)) if s[0] == 1),
               key=lambda i: segments(data)[i][2])
    put(data, phoff + last * PHENT + 12, "I", segments(data)[last][2] + 0x1000)  # p_paddr
    image = tmp_path / "in.elf"
    image.write_bytes(bytes(data))
    result = pvtool("patch", image, "-o", tmp_path / "out.elf")
    assert result.status == 76, result.stderr
    assert "VIRT_BASE" in result.stderr
    check_failure(result, "patch")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.elf"]
