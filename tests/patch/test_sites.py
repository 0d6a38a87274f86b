"""Sites and their rewrites, read back from the output by objdump: a small kernel holds
every class xen32 rewrites, each site followed by a 5-byte separator so that it gets a
detour of its own; the report must list each with its class and placement, the site
must now jump into .pvtext, and the stub there must hold the replacement (numbers from
the Xen ABI and docs/ABI.md, written out here), then the separator, then a jump back."""

import re
import shutil
import tomllib

import pytest

from pvtool.errors import PatchError
from pvtool.patch.patchset import PATCHES_DIR
from pvtool.patch.pipeline import patch_image
from tests.patch.tools import (
    HC_FPU_TASKSWITCH,
    HC_IRET,
    HC_MMUEXT_OP,
    HC_SCHED_OP,
    HC_SET_GDT,
    HC_SET_TRAP_TABLE,
    HC_STACK_SWITCH,
    HC_XEN_VERSION,
    REGS_CR0,
    REGS_CR3,
    REGS_CR4,
    REGS_GDTR,
    REGS_IDTR,
    REGS_LDTR,
    VCPU_CR2,
    VCPU_MASK,
    Glue,
    address,
    build_kernel,
    by_address,
    objdump,
    read_virtual,
    report,
    sections,
    stub_code,
    trap_table,
)

SEP = "add eax,0x12345678"  # objdump's text for the separator
CALL, JMP = "call GLUE", "jmp GLUE"  # a call or jump to a glue function in .pvtext
PV = "{pv}"  # the address of .pvdata, formatted in at run time

# label: (source, class, the stub's instructions before its jump back, the hypercalls
# the called glue reaches, a .pvdata offset or vcpu_info address the glue must name)
SITES = {
    "cli": ("cli", "cli", ["mov BYTE PTR ds:0xfc410001,0x1", SEP], None, None),
    "sti": ("sti", "sti", ["mov BYTE PTR ds:0xfc410001,0x0", CALL, SEP], {HC_XEN_VERSION}, None),
    "pushfd": ("pushfd", "pushf", ["pushf", CALL, SEP], set(), VCPU_MASK),
    "popfd": ("popfd", "popf", [CALL, "popf", SEP], {HC_XEN_VERSION}, VCPU_MASK),
    "hlt": ("hlt", "hlt", [CALL, SEP], {HC_SCHED_OP}, VCPU_MASK),
    "lgdt": ("lgdt [gdt_pointer]", "lgdt",
             ["push eax", "lea eax,ds:{gdt_pointer}", CALL, "pop eax"], {HC_SET_GDT},
             REGS_GDTR),
    "lgdt_esp": ("lgdt [esp+4]", "lgdt", ["push eax", "lea eax,[esp+0x8]", CALL, "pop eax"],
                 {HC_SET_GDT}, REGS_GDTR),
    "lidt_esp": ("lidt [esp+4]", "lidt", ["push eax", "lea eax,[esp+0x8]", CALL, "pop eax"],
                 {HC_SET_TRAP_TABLE}, REGS_IDTR),
    "sgdt_esp": ("sgdt [esp+8]", "sgdt", ["push eax", "lea eax,[esp+0xc]", CALL, "pop eax"],
                 set(), REGS_GDTR),
    "sidt_ebx": ("sidt [ebx+4]", "sidt",
                 ["push eax", "lea eax,[ebx+0x4]", CALL, "pop eax", SEP], set(), REGS_IDTR),
    "from_cr0_eax": ("mov eax, cr0", "mov_from_cr0", [f"mov eax,ds:{PV}", SEP], None, None),
    "from_cr0_ecx": ("mov ecx, cr0", "mov_from_cr0", [f"mov ecx,DWORD PTR ds:{PV}", SEP],
                     None, None),
    "to_cr0_eax": ("mov cr0, eax", "mov_to_cr0", [CALL, SEP],
                   {HC_FPU_TASKSWITCH, HC_MMUEXT_OP}, REGS_CR0),
    "to_cr0_ebx": ("mov cr0, ebx", "mov_to_cr0", ["push eax", "mov eax,ebx", CALL, "pop eax", SEP],
                   {HC_FPU_TASKSWITCH, HC_MMUEXT_OP}, REGS_CR0),
    "from_cr2_ebx": ("mov ebx, cr2", "mov_from_cr2",
                     ["mov ebx,DWORD PTR ds:0xfc410008", SEP], None, None),
    "from_cr2_eax": ("mov eax, cr2", "mov_from_cr2", ["mov eax,ds:0xfc410008", SEP], None, None),
    "to_cr2_ecx": ("mov cr2, ecx", "mov_to_cr2", ["mov DWORD PTR ds:0xfc410008,ecx", SEP],
                   None, None),
    "from_cr3_edx": ("mov edx, cr3", "mov_from_cr3", [f"mov edx,DWORD PTR ds:{PV}+4", SEP],
                     None, None),
    "from_cr3_ebp": ("mov ebp, cr3", "mov_from_cr3", [f"mov ebp,DWORD PTR ds:{PV}+4", SEP],
                     None, None),
    "to_cr3_esi": ("mov cr3, esi", "mov_to_cr3", ["push eax", "mov eax,esi", CALL, "pop eax", SEP],
                   {HC_MMUEXT_OP}, REGS_CR3),
    "to_cr3_eax": ("mov cr3, eax", "mov_to_cr3", [CALL, SEP], {HC_MMUEXT_OP}, REGS_CR3),
    "from_cr4_edi": ("mov edi, cr4", "mov_from_cr4", [f"mov edi,DWORD PTR ds:{PV}+8", SEP],
                     None, None),
    "to_cr4_ebp": ("mov cr4, ebp", "mov_to_cr4", ["push eax", "mov eax,ebp", CALL, "pop eax", SEP],
                   set(), REGS_CR4),
    "to_cr4_edx": ("mov cr4, edx", "mov_to_cr4", ["push eax", "mov eax,edx", CALL, "pop eax", SEP],
                   set(), REGS_CR4),
    "invlpg": ("invlpg [eax]", "invlpg", ["push eax", "lea eax,[eax]", CALL, "pop eax", SEP],
               {HC_MMUEXT_OP}, None),
    "invlpg_esp": ("invlpg [esp+12]", "invlpg",
                   ["push eax", "lea eax,[esp+0x10]", CALL, "pop eax"], {HC_MMUEXT_OP}, None),
    "ltr": ("ltr ax", "ltr", ["push eax", "movzx eax,ax", CALL, "pop eax", SEP],
            {HC_STACK_SWITCH}, None),
    "ltr_esp": ("ltr word ptr [esp+2]", "ltr",
                ["push eax", "movzx eax,WORD PTR [esp+0x6]", CALL, "pop eax"],
                {HC_STACK_SWITCH}, None),
    "clts": ("clts", "clts", [CALL, SEP], {HC_FPU_TASKSWITCH}, REGS_CR0),
    "mov_ss": ("mov ss, ax", "mov_to_ss",
               ["pushf", "push eax", "movzx eax,ax", "or eax,0x1", "mov ss,ax", "pop eax",
                "popf", SEP], None, None),
    "mov_ss_esp": ("mov ss, word ptr [esp+4]", "mov_to_ss",
                   ["pushf", "push eax", "movzx eax,WORD PTR [esp+0xc]", "or eax,0x1",
                    "mov ss,ax", "pop eax", "popf", SEP], None, None),
    "mov_cs": ("mov eax, cs", "mov_from_sreg",
               ["pushf", "mov eax,cs", "and eax,0xfffc", "popf", SEP], None, None),
    "mov_ss_to_edx": ("mov edx, ss", "mov_from_sreg",
                      ["pushf", "mov edx,ss", "and edx,0xfffc", "popf", SEP], None, None),
    "smsw": ("smsw eax", "smsw", [f"movzx eax,WORD PTR ds:{PV}", SEP], None, None),
    "sldt": ("sldt eax", "sldt", [f"movzx eax,WORD PTR ds:{PV}+32", SEP], None, None),
    "str": ("str ecx", "str", [f"movzx ecx,WORD PTR ds:{PV}+34", SEP], None, None),
    "lldt": ("lldt ax", "lldt", ["push eax", "movzx eax,ax", CALL, "pop eax", SEP], None,
             REGS_LDTR),
    "lmsw": ("lmsw bx", "lmsw", ["push eax", "movzx eax,bx", CALL, "pop eax", SEP],
             {HC_FPU_TASKSWITCH, HC_MMUEXT_OP}, REGS_CR0),
    "iretd": ("iretd", "iret", ["nop", "nop", "nop", "nop", JMP], {HC_IRET}, None),
}
KEPT = {"in": ("in al, 0x60", "in"), "out": ("out dx, al", "out"),
        "in_dx": ("in eax, dx", "in"), "insb": ("rep insb", "ins"),
        "outsd": ("outsd", "outs"), "rdmsr": ("rdmsr", "rdmsr"), "wrmsr": ("wrmsr", "wrmsr"),
        "push_cs": ("push cs", "push_sreg"), "lar": ("lar eax, ecx", "lar"),
        "lsl": ("lsl eax, ecx", "lsl"), "verr": ("verr ax", "verr"), "verw": ("verw ax", "verw")}
TRAPPED = {"to_dr7": ("mov dr7, eax", "mov_to_dr"), "from_dr6": ("mov eax, dr6", "mov_from_dr"),
           "pop_ss": ("pop ss", "pop_ss"), "sysexit": ("sysexit", "sysexit")}
IN_PLACE = {"wbinvd": ("wbinvd", "wbinvd", b"\x90\x90"), "invd": ("invd", "invd", b"\x90\x90")}


SITES_TRAPPED_CLASS = {label: cls for label, (_, cls) in TRAPPED.items()}


def toml_rule(cls: str) -> dict:
    """xen32's rule for CLS as tomllib reads it."""
    return tomllib.loads((PATCHES_DIR / "xen32" / "rules.toml").read_text())["class"][cls]


def kernel_source() -> str:
    lines = [".globl _start", ".type _start, @function", "_start:", "    mov esp, 0x90000",
             "    " + SEP]
    for label, (source, *_) in {**SITES, **KEPT, **IN_PLACE, **TRAPPED}.items():
        if label == "iretd":
            continue
        lines += [f"site_{label}:", f"    {source}", "    " + SEP]
    # iretd ends a path: only what comes before it can share its window; a function of
    # its own, as a path may end before it (sites only the sweep finds are left as is)
    lines += [".type iretd_window, @function", "iretd_window:", "    nop", "    nop",
              "    nop", "    nop", "site_iretd:", "    iretd"]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sites")
    elf, symbols = build_kernel(workdir, kernel_source(),
                                data="gdt_pointer:\n    .word 23\n    .long 0x100000\n")
    out = workdir / "kernel.pv.elf"
    patch_image(elf, out)
    rep = report(out)
    sites = {site["symbol"].split("+")[0].removeprefix("site_"): site for site in rep["sites"]}
    return elf, symbols, out, rep, sites


def expected_text(text: str, symbols: dict[str, int], pvdata: int) -> str:
    if "{pv}+" in text:
        head, offset = text.split("{pv}+")
        return head + hex(pvdata + int(offset))
    return text.replace(PV, hex(pvdata)).replace("{gdt_pointer}",
                                                 hex(symbols["gdt_pointer"]))


def test_the_report_lists_every_site_with_its_class(patched):
    elf, symbols, out, rep, sites = patched
    expected = {label: row[1] for label, row in {**SITES, **KEPT, **IN_PLACE, **TRAPPED}.items()}
    assert {label: site["class"] for label, site in sites.items()} == expected
    for label, site in sites.items():
        assert address(site) == symbols[f"site_{label}"]
        assert site["symbol"] == f"site_{label}+0x0"


@pytest.mark.parametrize("label", SITES)
def test_a_rewritten_site_jumps_to_a_stub_holding_its_replacement(patched, label):
    elf, symbols, out, rep, sites = patched
    _, cls, stub_lines, hypercalls, named = SITES[label]
    site = sites[label]
    assert site["placement"] == "detour"
    assert site["stub"] is not None
    stub = int(site["stub"], 16)
    pvtext = sections(out)[".pvtext"]
    assert pvtext.address + 4096 <= stub < pvtext.address + pvtext.size  # past the page
    entries = [line for line in objdump(out, section=".text") if line.target == stub]
    assert len(entries) == 1 and entries[0].mnemonic == "jmp"
    assert len(entries[0].data) == 5  # jmp rel32
    # the window starts at the site, or at the four nops before iretd
    assert entries[0].address == address(site) - (4 if label == "iretd" else 0)

    pvdata = sections(out)[".pvdata"].address
    code = stub_code(out, rep, stub)
    assert code[-1].mnemonic == "jmp"
    body = code[:-1]
    glue = Glue(out)
    expected = [expected_text(t, symbols, pvdata) for t in stub_lines]
    actual = [line.text for line in body]
    calls = [line for line in body if line.text.split(" ")[0] in ("call", "jmp")
             and line.target is not None and glue.contains(line.target)]
    for line in calls:
        actual[body.index(line)] = f"{line.mnemonic} GLUE"
    actual = [a.split(" <")[0] for a in actual]
    assert actual == expected
    if hypercalls is not None:
        assert len(calls) == 1
        reached = glue.hypercalls(calls[0].target)
        assert hypercalls <= reached if hypercalls else reached == set(), (label, reached)
    if named is not None:
        value = named if named > 0xFFFF else pvdata + named
        assert glue.names(calls[0].target, value), f"{label}'s glue never names {value:#x}"


def test_a_stub_returns_to_the_instruction_after_its_window(patched):
    elf, symbols, out, rep, sites = patched
    original = by_address(objdump(elf))
    for label in SITES:
        stub = int(sites[label]["stub"], 16)
        back = stub_code(out, rep, stub)[-1]
        at = address(sites[label])
        after_site = original[at].end
        if label == "iretd":  # its window is the four nops and the iretd, the last insn
            assert back.target == after_site
            continue
        separator = original[after_site]
        assert separator.text == SEP
        # a short site shares its window with the separator; a 5-byte one stands alone
        assert back.target in (after_site, separator.end)
        assert back.target == (after_site if len(original[at].data) >= 5 else separator.end)


@pytest.mark.parametrize("label", KEPT)
def test_kept_classes_stay_byte_for_byte(patched, label):
    elf, symbols, out, rep, sites = patched
    cls = KEPT[label][1]
    site = sites[label]
    assert (site["placement"], site["stub"]) == ("kept", None)
    at = address(site)
    original = by_address(objdump(elf))[at]
    assert read_virtual(out, at, len(original.data)) == original.data
    assert site["reason"] == toml_rule(cls)["keep"]


@pytest.mark.parametrize("label", TRAPPED)
def test_classes_xen32_leaves_to_the_hypervisor_are_trap_sites(patched, label):
    elf, symbols, out, rep, sites = patched
    site = sites[label]
    assert (site["placement"], site["stub"]) == ("trap", None)
    at = address(site)
    original = by_address(objdump(elf))[at]
    assert read_virtual(out, at, len(original.data)) == b"\xcc" * len(original.data)
    entry = next(e for e in trap_table(out) if e.address == at)
    assert (entry.length, entry.original) == (len(original.data), original.data)
    assert site["reason"] == toml_rule(SITES_TRAPPED_CLASS[label])["trap"]


@pytest.mark.parametrize("label", IN_PLACE)
def test_cache_flushes_become_nops_in_place(patched, label):
    elf, symbols, out, rep, sites = patched
    _, cls, replacement = IN_PLACE[label]
    site = sites[label]
    assert (site["placement"], site["stub"]) == ("in-place", None)
    at = address(site)
    assert read_virtual(elf, at, 2) != replacement
    assert read_virtual(out, at, 2) == replacement
    assert [line.text for line in objdump(out, start=at, stop=at + 2)] == ["nop", "nop"]


def test_an_in_place_rewrite_that_fits_the_site(tmp_path):
    """`mov eax, cr0` with two segment prefixes is five bytes: the same five bytes as
    `mov eax, [regs_cr0]` (A1 moffs32), so it is rewritten in place."""
    body = """
.globl _start
.type _start, @function
_start:
    .byte 0x3e, 0x3e, 0x0f, 0x20, 0xc0
    .byte 0x3e, 0x3e, 0x0f, 0x20, 0xd0
    ret
"""
    elf, _ = build_kernel(tmp_path, body)
    out = tmp_path / "out.elf"
    patch_image(elf, out)
    rep = report(out)
    assert [(s["class"], s["placement"]) for s in rep["sites"]] == [
        ("mov_from_cr0", "in-place"), ("mov_from_cr2", "in-place")]
    pvdata = sections(out)[".pvdata"].address
    code = objdump(out, section=".text", start=0x10000c, stop=0x100016)
    assert [line.text for line in code] == [f"mov eax,ds:{pvdata:#x}", f"mov eax,ds:{VCPU_CR2:#x}"]
    assert [len(line.data) for line in code] == [5, 5]


def test_an_operand_form_the_template_cannot_express_becomes_a_trap_site(tmp_path):
    """xen32's mov_to_ss template pushes before it reads its source: `mov ss, sp` must
    be a trap site (the hypervisor emulates mov to SS), also when it lies where a
    neighbour's detour window would cover it (cli at the entry point has no room
    before it, so its only window holds the mov)."""
    body = """
.globl _start
.type _start, @function
_start:
    cli
    mov ss, sp
    nop
    nop
    ret
"""
    elf, symbols = build_kernel(tmp_path, body)
    out = tmp_path / "out.elf"
    patch_image(elf, out)
    rep = report(out)
    placements = {s["class"]: s["placement"] for s in rep["sites"]}
    assert placements == {"cli": "trap", "mov_to_ss": "trap"}
    ss_site = next(s for s in rep["sites"] if s["class"] == "mov_to_ss")
    assert "the stub's pushes move esp" in ss_site["reason"]
    assert read_virtual(out, address(ss_site), 2) == b"\xcc\xcc"
    entry = next(e for e in trap_table(out) if e.address == address(ss_site))
    assert entry.original == b"\x8e\xd4"  # mov ss, sp


def test_forms_a_push_or_a_lea_would_get_wrong(tmp_path):
    """The call templates push eax first and take the address with lea: esp as the
    source is read as it was before the push; a segment override's base cannot be
    added by lea, nor can a segment move from esp survive the stub's pushes, so those
    become trap sites (the hypervisor emulates them with the real segments)."""
    body = "\n".join([".globl _start", ".type _start, @function", "_start:", f"    {SEP}"]
                     + [f"site_{n}:\n    {insn}\n    {SEP}" for n, insn in (
                         ("cr3_esp", "mov cr3, esp"), ("cr0_esp", "mov cr0, esp"),
                         ("invlpg_fs", "invlpg fs:[eax]"), ("ss_sp", "mov ss, sp"))]
                     + ["    ret"])
    elf, symbols = build_kernel(tmp_path, body)
    out = tmp_path / "out.elf"
    patch_image(elf, out)
    rep = report(out)
    got = {s["symbol"].split("+")[0].removeprefix("site_"): s for s in rep["sites"]}
    for label in ("cr3_esp", "cr0_esp"):
        assert got[label]["placement"] == "detour"
        stub = int(got[label]["stub"], 16)
        code = [line.text.split(" <")[0] for line in stub_code(out, rep, stub)]
        assert code[:2] == ["push eax", "lea eax,[esp+0x4]"]
        assert code[2].startswith("call ") and code[3] == "pop eax"
    assert got["invlpg_fs"]["placement"] == "trap"
    assert "segment override" in got["invlpg_fs"]["reason"]
    assert got["ss_sp"]["placement"] == "trap"
    assert "esp" in got["ss_sp"]["reason"]
    for label in ("invlpg_fs", "ss_sp"):
        assert read_virtual(out, symbols[f"site_{label}"], 1) == b"\xcc"


# A form no rewrite expresses, of a class the hypervisor does not emulate: source ->
# (class, why the rewrite cannot take it).
UNEMULATED_FORMS = {
    "lgdt gs:[0x1000]": ("lgdt", "segment overrides are not rewritten"),
    "ltr sp": ("ltr", "the stub's pushes move esp"),
    "mov esp, cs": ("mov_from_sreg", "the stub's pushes move esp"),
    "smsw word ptr [ebx]": ("smsw", "only register destinations are rewritten"),
}


@pytest.mark.parametrize("source, original", [("str word ptr [ebx]", b"\x0f\x00\x0b"),
                                              ("sldt word ptr [ebp - 0x20]", b"\x0f\x00\x45\xe0")])
def test_a_selector_store_to_memory_is_a_trap_site(tmp_path, source, original):
    """str and sldt to memory (Linux has three): the templates write a register
    destination only, and the hypervisor emulates both classes, so they are trap sites
    holding the original bytes."""
    body = "\n".join([".globl _start", ".type _start, @function", "_start:", f"    {SEP}",
                      "site:", f"    {source}", f"    {SEP}", "    ret"])
    elf, symbols = build_kernel(tmp_path, body)
    out = tmp_path / "out.elf"
    patch_image(elf, out)
    site = next(s for s in report(out)["sites"] if address(s) == symbols["site"])
    assert site["placement"] == "trap"
    assert site["reason"] == f"{source}: only register destinations are rewritten"
    assert [(e.address, e.original) for e in trap_table(out)] == [(symbols["site"], original)]


@pytest.mark.parametrize("source", UNEMULATED_FORMS)
def test_a_site_that_would_be_a_trap_site_nothing_emulates_refuses_the_image(
        tmp_path, source):
    """As a trap site it would crash the domain the moment it ran (TRAP_SITE_CLASSES
    in abi/pvtool.py lists what the hypervisor emulates), so the patcher refuses the
    image with the patch-error status, naming the site, and writes nothing."""
    cls, why = UNEMULATED_FORMS[source]
    body = "\n".join([".globl _start", ".type _start, @function", "_start:", f"    {SEP}",
                      "site:", f"    {source}", f"    {SEP}", "    ret"])
    elf, symbols = build_kernel(tmp_path, body)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(PatchError) as caught:
        patch_image(elf, tmp_path / "out.elf")
    message = caught.value.message
    assert f"at {symbols['site']:#010x}: {why}" in message
    assert f"cannot emulate {cls} at a trap site" in message
    assert caught.value.exit_status == 76
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def without_rule(tmp_path, cls: str):
    """A copy of xen32 whose rules file has no [class.CLS] table."""
    folder = tmp_path / f"xen32-without-{cls}"
    shutil.copytree(PATCHES_DIR / "xen32", folder)
    rules = folder / "rules.toml"
    text, count = re.subn(rf"\[class\.{cls}\]\n(?:[^\[\n].*\n)*\n?", "", rules.read_text())
    assert count == 1
    rules.write_text(text)
    return folder


def test_a_class_without_a_rule_is_a_trap_site_when_the_hypervisor_emulates_it(tmp_path):
    folder = without_rule(tmp_path, "cli")
    elf, symbols = build_kernel(tmp_path, "\n".join(
        [".globl _start", ".type _start, @function", "_start:", f"    {SEP}", "site:",
         "    cli", f"    {SEP}", "    ret"]))
    out = tmp_path / "out.elf"
    patch_image(elf, out, str(folder))
    (site,) = report(out)["sites"]
    assert (site["class"], site["placement"]) == ("cli", "trap")
    assert site["reason"] == "xen32 has no rule for cli"  # the set keeps its name
    assert [(e.address, e.original) for e in trap_table(out)] == [(symbols["site"], b"\xfa")]


def test_a_class_without_a_rule_the_hypervisor_cannot_emulate_refuses_the_image(tmp_path):
    folder = without_rule(tmp_path, "sgdt")
    elf, symbols = build_kernel(tmp_path, "\n".join(
        [".globl _start", ".type _start, @function", "_start:", f"    {SEP}", "site:",
         "    sgdt [eax]", f"    {SEP}", "    ret"]))
    with pytest.raises(PatchError) as caught:
        patch_image(elf, tmp_path / "out.elf", str(folder))
    assert caught.value.message == (
        f"sgdt [eax] at {symbols['site']:#010x}: xen32 has no rule for sgdt, and "
        "pvtool's hypervisor cannot emulate sgdt at a trap site")
    assert caught.value.exit_status == 76
    assert not (tmp_path / "out.elf").exists()
