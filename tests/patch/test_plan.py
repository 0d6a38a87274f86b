"""Placement: a detour where a window of whole instructions free of branch targets has
room for a jump, a trap site (int3 and a table entry holding the original bytes) where
none does; displaced branches still reach their targets; every other byte of the image
is the input's. All read back from the output with objdump, readelf and the note."""

import struct

import pytest

from pvtool.errors import PatchError
from pvtool.patch.pipeline import patch_image
from tests.oracles import guest_path, require_tool
from tests.patch.tools import (
    Line,
    address,
    branch_targets,
    build_kernel,
    by_address,
    changed_ranges,
    objdump,
    read_virtual,
    report,
    run,
    segments,
    stub_code,
    trap_table,
)

# Each case is named by a label just before its site.
KERNEL = """
.globl _start
.type _start, @function
_start:
    mov ecx, 10
    call tight_loop
    call tight_loop_cr3
    call pop_ss_site
    test eax, eax
    jz site_before_dead
    jz site_before_padding
    jz site_with_port
    jmp room
room:                       # a site with room: a detour over it and the next insn
site_room:
    cli
    mov ebx, 0x11223344

# cli is a branch target, and so is the instruction right after it
tight_loop:
site_tight:
    cli
again:
    inc eax
    cmp eax, 10
    jb tight_loop
    dec ecx
    jnz again
    ret

# a three-byte site in the same shape: three int3s, three original bytes in the table
tight_loop_cr3:
site_tight_cr3:
    mov eax, cr3
again_cr3:
    dec ecx
    jnz tight_loop_cr3
    loop again_cr3
    ret

# the rule for pop ss is a trap site, room or not
pop_ss_site:
    nop
    nop
    nop
    nop
site_pop_ss:
    pop ss
    nop
    nop
    nop
    nop
    ret

# displaced branches: je and call move into the stub and keep their targets
# (each case nothing above falls into is a function: the sweep's sites are left as is)
.type site_branches, @function
site_branches:
    sti
    jz far_away
    call helper
    nop
# a window ending with a jump may take the alignment padding after it
site_jump_last:
    cli
    jmp far_away
    .p2align 4
# a branch target right after the site: the window must grow backwards
.type before_target, @function
before_target:
    nop
    nop
    nop
    nop
site_before_target:
    hlt
target_after:
    inc ebx
    inc ebx
    inc ebx
    inc ebx
    inc ebx
    jmp target_after
# a site that is a branch target: its window may start there
.type site_at_target, @function
site_at_target:
    clts
    mov edx, 0x55667788
    jmp site_at_target
# loop only has a rel8 form: it is never moved, the window grows backwards
.type loop_top, @function
loop_top:
    inc edx
    nop
    nop
    nop
    nop
site_before_loop:
    sti
    loop loop_top
# after an unconditional jump only padding may share a window, not dead code: with
# a branch target at the site, nothing before it can help
    mov ebx, 1
site_before_dead:
    sti
    jmp far_away
    inc eax
    inc eax
    inc eax
    inc eax
    mov ebx, 1
site_before_padding:
    sti
    jmp far_away
    nop
    nop
    nop
    inc eax
# two short sites share one window and one stub
.type site_pair, @function
site_pair:
    ltr ax
    clts
    mov esi, 0x01020304
# a kept site a window covers moves into the stub unchanged
site_with_port:
    cli
    in al, 0x60
    nop
    nop
    ret
# code nothing reaches is swept: possible code, its sites left as they are
    cli
    mov esi, 0x01020304
    .p2align 4
far_away:
    ret
.type helper, @function
helper:
    ret
"""


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("plan")
    elf, symbols = build_kernel(workdir, KERNEL)
    out = workdir / "kernel.pv.elf"
    patch_image(elf, out)
    rep = report(out)
    return elf, symbols, out, rep


def sites_at(rep: dict, symbols: dict[str, int], label: str) -> list[dict]:
    return [s for s in rep["sites"] if address(s) == symbols[label]]


def site_at(rep, symbols, label) -> dict:
    found = sites_at(rep, symbols, label)
    assert len(found) == 1, (label, found)
    return found[0]


def window(elf, out, rep, site) -> tuple[int, int]:
    """The range the site's detour changed, read from the output."""
    at = address(site)
    for start, end, _ in changed_ranges(elf, out, rep):
        if start <= at < end:
            return start, end
    raise AssertionError(f"{site['address']} is in no changed range")


def stub_of(out, rep, site) -> list[Line]:
    return stub_code(out, rep, int(site["stub"], 16))


def test_a_site_with_room_gets_a_detour(patched):
    elf, symbols, out, rep = patched
    site = site_at(rep, symbols, "site_room")
    assert site["placement"] == "detour"
    assert window(elf, out, rep, site) == (symbols["site_room"], symbols["site_room"] + 6)
    assert [line.text for line in stub_of(out, rep, site)][:2] == [
        "mov BYTE PTR ds:0xfc410001,0x1", "mov ebx,0x11223344"]


@pytest.mark.parametrize("label, original", [("site_tight", b"\xfa"),
                                             ("site_tight_cr3", b"\x0f\x20\xd8"),
                                             ("site_pop_ss", b"\x17")])
def test_a_site_without_a_usable_window_is_a_trap_site(patched, label, original):
    elf, symbols, out, rep = patched
    at = symbols[label]
    site = site_at(rep, symbols, label)
    assert site["placement"] == "trap"
    assert site["stub"] is None
    assert read_virtual(elf, at, len(original)) == original
    assert read_virtual(out, at, len(original)) == b"\xcc" * len(original)
    entries = {entry.address: entry for entry in trap_table(out)}
    assert entries[at].length == len(original)
    assert entries[at].original == original


def test_the_trap_table_lists_exactly_the_trap_sites(patched):
    elf, symbols, out, rep = patched
    traps = sorted(address(s) for s in rep["sites"] if s["placement"] == "trap")
    assert traps == sorted(symbols[n] for n in ("site_tight", "site_tight_cr3", "site_pop_ss",
                                                "site_before_dead"))
    assert sorted(entry.address for entry in trap_table(out)) == traps


def test_the_trap_reasons_say_why(patched):
    elf, symbols, out, rep = patched
    assert "branch target" in site_at(rep, symbols, "site_tight")["reason"]
    assert "stack switch" in site_at(rep, symbols, "site_pop_ss")["reason"]


# A one-byte site that is a branch target, followed by one: no 5-byte window holds it.
TIGHT_LOOP = """
.globl _start
.type _start, @function
_start:
    mov ecx, 3
top:
    {site}
bottom:
    pop eax
    loop top
    jmp bottom
"""


def test_a_site_without_a_window_that_nothing_emulates_refuses_the_image(tmp_path):
    """A popfd that is a branch target, followed by one: no window, and the hypervisor
    cannot emulate popf at a trap site (abi/pvtool.py TRAP_SITE_CLASSES), so the image
    is refused, naming the site and the branch targets, and nothing is written."""
    elf, symbols = build_kernel(tmp_path, TIGHT_LOOP.format(site="popfd"))
    with pytest.raises(PatchError) as caught:
        patch_image(elf, tmp_path / "out.elf")
    targets = ", ".join(f"{symbols[name]:#x}" for name in ("_start", "top", "bottom"))
    assert caught.value.message == (
        f"popfd at {symbols['top']:#010x}: branch targets at {targets} cut every 5-byte "
        "window that holds it, and pvtool's hypervisor cannot emulate popf at a trap site")
    assert caught.value.exit_status == 76
    assert not (tmp_path / "out.elf").exists()


def test_a_pushf_without_a_window_becomes_a_trap_site(tmp_path):
    """The same loop around a pushfd (Linux has four such sites): the hypervisor
    emulates pushf, so it is a trap site whose reason names the branch targets."""
    elf, symbols = build_kernel(tmp_path, TIGHT_LOOP.format(site="pushfd"))
    out = tmp_path / "out.elf"
    patch_image(elf, out)
    site = next(s for s in report(out)["sites"] if address(s) == symbols["top"])
    targets = ", ".join(f"{symbols[name]:#x}" for name in ("_start", "top", "bottom"))
    assert site["placement"] == "trap"
    assert site["reason"] == f"branch targets at {targets} cut every 5-byte window that holds it"
    assert read_virtual(out, symbols["top"], 1) == b"\xcc"
    assert [(e.address, e.original) for e in trap_table(out)] == [(symbols["top"], b"\x9c")]


def test_a_site_left_without_room_joins_its_neighbours_detour(tmp_path):
    """Linux's sync_core (iret to self): pushf's smallest window takes the push before
    the iret, whose own window can neither grow past it (its return address is a branch
    target) nor fall back to a trap site. The iret joins pushf's detour: one window
    over all four instructions, one stub, ending with the iret's replacement."""
    elf, symbols = build_kernel(tmp_path, """
.globl _start
.type _start, @function
_start:
    push ebp
    mov ebp, esp
site_pushf:
    pushfd
    push cs
    push offset back
site_iret:
    iretd
back:
    pop ebp
    ret
""")
    out = tmp_path / "out.elf"
    patch_image(elf, out)
    rep = report(out)
    pushf, iret = (next(s for s in rep["sites"] if address(s) == symbols[label])
                   for label in ("site_pushf", "site_iret"))
    assert pushf["placement"] == iret["placement"] == "detour"
    assert pushf["stub"] == iret["stub"] is not None
    assert f"joined with the site at {symbols['site_iret']:#x}" in pushf["reason"]
    start, end = next((a, b) for a, b, _ in changed_ranges(elf, out, rep)
                      if a <= symbols["site_pushf"] < b)
    assert (start, end) == (symbols["site_pushf"], symbols["back"])


def test_displaced_relative_branches_keep_their_targets(patched):
    elf, symbols, out, rep = patched
    site = site_at(rep, symbols, "site_branches")
    code = stub_of(out, rep, site)
    branches = [(line.mnemonic, line.target) for line in code if line.target is not None]
    assert branches[1:] == [("je", symbols["far_away"]), ("call", symbols["helper"]),
                            ("jmp", symbols["site_branches"] + 8)]
    # the stub moved them: each is re-encoded with a 32-bit displacement
    assert [len(line.data) for line in code if line.mnemonic in ("je", "call")][-2:] == [6, 5]


def test_a_window_may_end_with_a_jump_and_the_padding_after_it(patched):
    elf, symbols, out, rep = patched
    site = site_at(rep, symbols, "site_jump_last")
    start, end = window(elf, out, rep, site)
    assert start == symbols["site_jump_last"]
    padding = [line for line in objdump(elf, start=start + 3, stop=end)]
    assert padding and all(line.mnemonic in ("nop", "lea", "xchg") for line in padding)
    code = stub_of(out, rep, site)
    assert (code[1].mnemonic, code[1].target) == ("jmp", symbols["far_away"])


def test_a_window_grows_backwards_rather_than_cover_a_branch_target(patched):
    elf, symbols, out, rep = patched
    site = site_at(rep, symbols, "site_before_target")
    assert site["placement"] == "detour"
    start, end = window(elf, out, rep, site)
    assert (start, end) == (symbols["site_before_target"] - 4, symbols["target_after"])
    target = symbols["target_after"]
    assert read_virtual(out, target, 5) == read_virtual(elf, target, 5) == b"\x43" * 5


def test_a_window_may_start_at_a_branch_target(patched):
    elf, symbols, out, rep = patched
    site = site_at(rep, symbols, "site_at_target")
    assert site["placement"] == "detour"
    assert window(elf, out, rep, site) == (symbols["site_at_target"],
                                           symbols["site_at_target"] + 7)


def test_a_rel8_only_branch_is_never_displaced(patched):
    elf, symbols, out, rep = patched
    sti = site_at(rep, symbols, "site_before_loop")
    assert sti["placement"] == "detour"
    start, end = window(elf, out, rep, sti)
    loop = by_address(objdump(elf))[end]
    assert loop.mnemonic == "loop"
    assert read_virtual(out, loop.address, 2) == loop.data
    assert start == symbols["site_before_loop"] - 4  # four nops and the sti
    assert start > symbols["loop_top"]


def test_dead_code_after_a_jump_stays_out_of_a_window(patched):
    elf, symbols, out, rep = patched
    site = site_at(rep, symbols, "site_before_dead")
    assert site["placement"] == "trap"
    after = symbols["site_before_dead"] + 1
    assert read_virtual(out, after, 6) == read_virtual(elf, after, 6)


def test_padding_after_a_jump_may_complete_a_window(patched):
    elf, symbols, out, rep = patched
    site = site_at(rep, symbols, "site_before_padding")
    assert site["placement"] == "detour"
    start = symbols["site_before_padding"]
    assert window(elf, out, rep, site) == (start, start + 5)  # sti, jmp, two nops
    assert read_virtual(out, start + 5, 2) == b"\x90\x40"


def test_two_sites_in_one_window_share_its_stub(patched):
    elf, symbols, out, rep = patched
    ltr, clts = sorted(sites_at(rep, symbols, "site_pair")
                       + [s for s in rep["sites"] if address(s) == symbols["site_pair"] + 3],
                       key=address)
    assert (ltr["class"], clts["class"]) == ("ltr", "clts")
    assert ltr["stub"] == clts["stub"] is not None
    code = [line.text.split(" <")[0] for line in stub_of(out, rep, ltr)]
    assert code[:2] == ["push eax", "movzx eax,ax"]
    assert [t.split()[0] for t in code[2:6]] == ["call", "pop", "call", "jmp"]
    assert window(elf, out, rep, ltr) == (symbols["site_pair"], symbols["site_pair"] + 5)


def test_a_covered_site_says_whose_detour_it_is_in(patched):
    elf, symbols, out, rep = patched
    ltr = site_at(rep, symbols, "site_pair")
    clts = next(s for s in rep["sites"] if address(s) == symbols["site_pair"] + 3)
    assert ltr["reason"].startswith("replacement is ")
    assert clts["reason"] == (
        f"rewritten, moved into the detour of the site at {address(ltr):#x}")


def test_a_kept_site_in_a_window_moves_into_the_stub_unchanged(patched):
    elf, symbols, out, rep = patched
    cli = site_at(rep, symbols, "site_with_port")
    port = next(s for s in rep["sites"] if address(s) == symbols["site_with_port"] + 1)
    assert port["class"] == "in"
    assert (port["placement"], port["stub"]) == ("detour", cli["stub"])
    assert port["reason"].startswith("kept as is, moved into the detour")
    code = stub_of(out, rep, cli)
    assert [(line.text, line.data) for line in code[1:2]] == [("in al,0x60", b"\xe4\x60")]


def test_a_site_only_the_sweep_finds_is_left_as_is(patched):
    elf, symbols, out, rep = patched
    after_ret = symbols["site_with_port"] + 6
    site = next(s for s in rep["sites"] if address(s) == after_ret)
    assert (site["class"], site["found_by"], site["placement"]) == ("cli", "sweep", "kept")
    assert site["reason"].startswith("possible code")
    assert read_virtual(out, after_ret, 1) == b"\xfa"
    assert site_at(rep, symbols, "site_with_port")["found_by"] == "recursion"
    runs = {(int(p["start"], 16), int(p["end"], 16)): p["sites"]
            for p in rep["possible_code"]["runs_with_sites"]}
    assert [sites for (start, end), sites in runs.items() if start <= after_ret < end] == [
        [f"{after_ret:#010x}"]]


# ---- properties of every output, checked on the kernel above and on hello -------------


@pytest.fixture(scope="module")
def hello(tmp_path_factory):
    elf = guest_path("hello")
    out = tmp_path_factory.mktemp("hello") / "hello.pv.elf"
    patch_image(elf, out)
    return elf, out, report(out)


@pytest.fixture(params=["kernel", "hello"])
def image(request, patched, hello):
    if request.param == "kernel":
        elf, _, out, rep = patched
        return elf, out, rep
    return hello


def entry_point(elf) -> int:
    header = run(require_tool("readelf"), "-hW", str(elf)).stdout
    return int(next(line for line in header.splitlines() if "Entry point" in line).split()[-1], 16)


def test_no_window_covers_a_branch_target_but_at_its_start(image):
    elf, out, rep = image
    targets = branch_targets(elf) | {entry_point(elf)}
    for start, end, kind in changed_ranges(elf, out, rep):
        inside = sorted(t for t in targets if start < t < end)
        assert not inside, f"{kind} [{start:#x}, {end:#x}) covers {[hex(t) for t in inside]}"


def test_changed_ranges_hold_whole_instructions(image):
    elf, out, rep = image
    starts = set(by_address(objdump(elf)))
    code_ends = {s.vaddr + s.filesz for s in segments(elf) if s.type == "LOAD" and "E" in s.flags}
    for start, end, kind in changed_ranges(elf, out, rep):
        assert start in starts, (kind, hex(start))
        assert end in starts or end in code_ends, (kind, hex(end))


def test_every_byte_outside_the_changed_ranges_is_the_inputs(image):
    elf, out, rep = image
    ranges = changed_ranges(elf, out, rep)
    data = elf.read_bytes()
    checked = 0
    for seg in segments(elf):
        if seg.type != "LOAD":
            continue
        before = data[seg.offset:seg.offset + seg.filesz]
        after = read_virtual(out, seg.vaddr, seg.filesz) if seg.filesz else b""
        for offset, (x, y) in enumerate(zip(before, after, strict=True)):
            at = seg.vaddr + offset
            if seg.offset + offset < 52:
                continue  # the ELF header (see the next test)
            if not any(start <= at < end for start, end, _ in ranges):
                assert x == y, f"byte at {at:#x} changed outside every site's range"
                checked += 1
    assert checked > 0


def test_the_only_header_bytes_that_change_point_at_the_new_tables(image):
    """ld maps the ELF header in the first PT_LOAD of the small kernels: only the
    program and section table fields of it may change."""
    elf, out, rep = image
    fields = "<16sHHIIIIIHHHHHH"
    names = ["ident", "type", "machine", "version", "entry", "phoff", "shoff", "flags",
             "ehsize", "phentsize", "phnum", "shentsize", "shnum", "shstrndx"]
    before = dict(zip(names, struct.unpack_from(fields, elf.read_bytes()), strict=True))
    after = dict(zip(names, struct.unpack_from(fields, out.read_bytes()), strict=True))
    changed = {name for name in names if before[name] != after[name]}
    assert changed <= {"phoff", "shoff", "phnum", "shnum", "shstrndx"}
    assert {"phoff", "phnum"} <= changed


def test_every_detour_entry_is_a_jump_padded_with_int3(image):
    elf, out, rep = image
    for start, end, kind in changed_ranges(elf, out, rep):
        code = read_virtual(out, start, end - start)
        if kind == "detour":
            assert code[0] == 0xE9 and code[5:] == b"\xcc" * (end - start - 5)
        elif kind == "trap":
            assert code == b"\xcc" * (end - start)
