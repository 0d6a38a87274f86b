"""The catalogue classifies real encodings (GNU as's) into the right class, and
ordinary instructions into none."""

import capstone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvtool.x86 import isa
from pvtool.x86.catalogue import (
    BY_NAME,
    CATALOGUE,
    Kind,
    MemoryOperand,
    PortAccess,
    RegisterOperand,
    SegmentMove,
    SpecialRegisterMove,
    by_name,
    classify,
    may_classify,
    operand_info,
)
from tests.x86.gas import gnu_assemble

# Every form of every class that GNU as accepts, per mode: (source, class name).
FORMS_32 = [
    ("cli", "cli"), ("sti", "sti"), ("hlt", "hlt"),
    ("lgdt [eax]", "lgdt"), ("lgdt [0x1000]", "lgdt"), ("lgdt [esp+8]", "lgdt"),
    ("lidt [ebx+ecx*4+4]", "lidt"), ("lidt [0x2000]", "lidt"),
    ("lldt ax", "lldt"), ("lldt word ptr [eax]", "lldt"),
    ("ltr ax", "ltr"), ("ltr word ptr [esp]", "ltr"),
    ("mov cr0, eax", "mov_to_cr0"), ("mov edi, cr0", "mov_from_cr0"),
    ("mov eax, cr2", "mov_from_cr2"), ("mov cr2, edx", "mov_to_cr2"),
    ("mov cr3, ebx", "mov_to_cr3"), ("mov ecx, cr3", "mov_from_cr3"),
    ("mov cr4, esi", "mov_to_cr4"), ("mov ebp, cr4", "mov_from_cr4"),
    ("mov dr0, eax", "mov_to_dr"), ("mov dr7, ecx", "mov_to_dr"),
    ("mov eax, dr6", "mov_from_dr"), ("mov edx, dr3", "mov_from_dr"),
    ("invlpg [eax]", "invlpg"), ("invlpg [0x400000]", "invlpg"),
    ("in al, 0x60", "in"), ("in ax, 0x60", "in"), ("in eax, 0x60", "in"),
    ("in al, dx", "in"), ("in ax, dx", "in"), ("in eax, dx", "in"),
    ("out 0x80, al", "out"), ("out 0x80, ax", "out"), ("out 0x80, eax", "out"),
    ("out dx, al", "out"), ("out dx, ax", "out"), ("out dx, eax", "out"),
    ("insb", "ins"), ("insw", "ins"), ("insd", "ins"),
    ("rep insb", "ins"), ("rep insw", "ins"), ("rep insd", "ins"),
    ("outsb", "outs"), ("outsw", "outs"), ("outsd", "outs"),
    ("rep outsb", "outs"), ("rep outsw", "outs"), ("rep outsd", "outs"),
    ("wrmsr", "wrmsr"), ("rdmsr", "rdmsr"), ("clts", "clts"), ("wbinvd", "wbinvd"),
    ("invd", "invd"), ("lmsw ax", "lmsw"), ("lmsw word ptr [eax]", "lmsw"),
    ("pushfd", "pushf"), ("pushfw", "pushf"), ("popfd", "popf"), ("popfw", "popf"),
    ("iretd", "iret"), ("iretw", "iret"),
    ("sgdt [eax]", "sgdt"), ("sidt [esp+4]", "sidt"),
    ("sldt eax", "sldt"), ("sldt ax", "sldt"), ("sldt word ptr [eax]", "sldt"),
    ("str eax", "str"), ("str word ptr [eax]", "str"),
    ("smsw eax", "smsw"), ("smsw word ptr [eax]", "smsw"),
    ("lar eax, ecx", "lar"), ("lar eax, word ptr [ebx]", "lar"),
    ("lsl eax, ecx", "lsl"), ("lsl edx, word ptr [ebx]", "lsl"),
    ("verr ax", "verr"), ("verr word ptr [eax]", "verr"),
    ("verw ax", "verw"), ("verw word ptr [eax]", "verw"),
    ("mov eax, cs", "mov_from_sreg"), ("mov ax, ss", "mov_from_sreg"),
    ("mov word ptr [eax], cs", "mov_from_sreg"), ("mov word ptr [esp], ss", "mov_from_sreg"),
    ("mov ss, ax", "mov_to_ss"), ("mov ss, word ptr [eax]", "mov_to_ss"),
    ("push cs", "push_sreg"), ("push ss", "push_sreg"), ("pushw cs", "push_sreg"),
    ("pop ss", "pop_ss"),
    ("sysexit", "sysexit"), ("sysret", "sysret"),
    ("xsetbv", "xsetbv"), ("invpcid eax, [ecx]", "invpcid"),
]  # fmt: skip
FORMS_64 = [
    ("cli", "cli"), ("sti", "sti"), ("hlt", "hlt"), ("lgdt [rax]", "lgdt"),
    ("lidt [rsp+8]", "lidt"), ("mov rdx, cr0", "mov_from_cr0"), ("mov cr2, rax", "mov_to_cr2"),
    ("lldt ax", "lldt"), ("ltr ax", "ltr"),
    ("mov cr0, rax", "mov_to_cr0"), ("mov rax, cr2", "mov_from_cr2"),
    ("mov cr3, r8", "mov_to_cr3"), ("mov r15, cr3", "mov_from_cr3"),
    ("mov cr4, rax", "mov_to_cr4"), ("mov rax, cr4", "mov_from_cr4"),
    ("mov cr8, rax", "mov_to_cr8"), ("mov rax, cr8", "mov_from_cr8"),
    ("mov dr7, rax", "mov_to_dr"), ("mov rax, dr6", "mov_from_dr"),
    ("invlpg [rax]", "invlpg"), ("in eax, dx", "in"), ("out 0x80, al", "out"),
    ("rep insd", "ins"), ("rep outsb", "outs"), ("wrmsr", "wrmsr"), ("rdmsr", "rdmsr"),
    ("clts", "clts"), ("wbinvd", "wbinvd"), ("invd", "invd"), ("lmsw ax", "lmsw"),
    ("pushfq", "pushf"), ("popfq", "popf"), ("iretq", "iret"), ("iretd", "iret"),
    ("retfq", "retfq"), ("retfq 8", "retfq"),
    ("sgdt [rax]", "sgdt"), ("sidt [rax]", "sidt"), ("sldt eax", "sldt"), ("str eax", "str"),
    ("smsw rax", "smsw"), ("lar eax, ecx", "lar"), ("lsl rax, rcx", "lsl"),
    ("verr ax", "verr"), ("verw ax", "verw"),
    ("mov eax, cs", "mov_from_sreg"), ("mov word ptr [rax], ss", "mov_from_sreg"),
    ("mov ss, eax", "mov_to_ss"),
    ("sysexitq", "sysexit"), ("sysretq", "sysret"), ("swapgs", "swapgs"),
    ("mov rax, cs", "mov_from_sreg"), ("mov ss, word ptr [rip+4]", "mov_to_ss"),
    ("rdfsbase rax", "rdfsbase"), ("rdgsbase r9d", "rdgsbase"), ("wrfsbase r12", "wrfsbase"),
    ("wrgsbase rax", "wrgsbase"), ("xsetbv", "xsetbv"), ("invpcid rax, [rcx]", "invpcid"),
    ("mov cr3, rsp", "mov_to_cr3"), ("mov r13, cr2", "mov_from_cr2"),
    ("lgdt [rip+0x100]", "lgdt"), ("invlpg [rip+0x20]", "invlpg"),
]  # fmt: skip
# Instructions a kernel executes freely at any ring: none of them is a site.
ORDINARY_32 = [
    "mov eax, ebx", "push eax", "pop ebx", "int 0x80", "int3", "int 0x82", "nop", "ret",
    "mov eax, [ebx+4]", "lea eax, [eax*4+8]", "call eax", "jmp eax", "pushad", "popad",
    "mov eax, ds", "mov ds, ax", "mov es, ax", "mov fs, ax", "mov gs, ax",
    "push ds", "push es", "push fs", "push gs", "pop ds", "pop es", "pop fs", "pop gs",
    "rdtsc", "cpuid", "xchg eax, ebx", "lock add dword ptr [eax], 1", "rep stosd",
    "rep movsb", "cld", "std", "clc", "stc", "sysenter", "ud2", "retf", "leave", "cdq",
    "fninit", "lfence", "pause", "mov eax, 0x1000", "test al, 1", "shl eax, 4",
]  # fmt: skip
ORDINARY_64 = [
    "mov rax, rbx", "push rax", "syscall", "int 0x80", "mov rax, [rip+8]", "push fs",
    "pop gs", "mov eax, ds", "rdtsc", "cpuid", "lea rax, [rax+rcx*8]",
]  # fmt: skip


def decode_forms(forms, mode, tmp_path):
    code = gnu_assemble([source for source, _ in forms], mode, tmp_path)
    insns = list(isa.decode_all(code, 0x1000, mode))
    assert len(insns) == len(forms), "one instruction per statement"
    assert not [i for i in insns if isinstance(i, isa.Undecodable)]
    return insns


@pytest.mark.parametrize("mode, forms", [(32, FORMS_32), (64, FORMS_64)])
def test_every_form_assembled_by_gnu_as_lands_in_its_class(mode, forms, tmp_path):
    insns = decode_forms(forms, mode, tmp_path)
    wrong = [
        (source, expected, getattr(classify(insn), "name", None))
        for (source, expected), insn in zip(forms, insns, strict=True)
        if getattr(classify(insn), "name", None) != expected
    ]
    assert wrong == []


@pytest.mark.parametrize("mode, forms", [(32, FORMS_32), (64, FORMS_64)])
def test_every_class_of_a_mode_is_exercised(mode, forms):
    exercised = {name for _, name in forms}
    assert exercised == {row.name for row in CATALOGUE if mode in row.modes}


@pytest.mark.parametrize("mode, ordinary", [(32, ORDINARY_32), (64, ORDINARY_64)])
def test_ordinary_instructions_are_not_sites(mode, ordinary, tmp_path):
    insns = decode_forms([(source, None) for source in ordinary], mode, tmp_path)
    found = {source: classify(insn).name for source, insn in zip(ordinary, insns, strict=True)
             if classify(insn) is not None}  # fmt: skip
    assert found == {}


def test_classification_ignores_capstones_privilege_group(tmp_path):
    """capstone misses rdmsr, clts and lar, and flags mov ds and str: the catalogue does not
    follow it either way."""
    sources = ["rdmsr", "clts", "mov ds, ax", "str eax"]
    insns = decode_forms([(s, None) for s in sources], 32, tmp_path)
    in_group = [insn.group(capstone.CS_GRP_PRIVILEGE) for insn in insns]
    assert in_group == [False, False, True, True]
    assert [getattr(classify(i), "name", None) for i in insns] == ["rdmsr", "clts", None, "str"]


def test_rows_are_well_formed():
    names = [row.name for row in CATALOGUE]
    assert len(names) == len(set(names)) == len(BY_NAME)
    for row in CATALOGUE:
        assert row.modes and row.modes <= {32, 64}
        assert row.summary and row.pv and row.why
        assert "\n" not in row.pv
        if row.kind is Kind.PRIVILEGED:
            assert row.faults_when_deprivileged, row.name


def test_sensitive_rows_fault_only_when_a_ring_0_selector_is_loaded():
    faulting = {row.name for row in CATALOGUE if row.kind is Kind.SENSITIVE
                and row.faults_when_deprivileged}  # fmt: skip
    assert faulting == {"mov_to_ss", "pop_ss", "retfq"}


def test_rows_are_frozen_and_named_lookups_work():
    with pytest.raises(AttributeError):
        by_name("cli").name = "x"
    assert (
        by_name("cli").pv == "clears the virtual interrupt flag: vcpu_info.evtchn_upcall_mask = 1"
    )
    with pytest.raises(KeyError):
        by_name("no_such_class")


def infos(sources, mode, tmp_path):
    return [operand_info(i) for i in decode_forms([(s, None) for s in sources], mode, tmp_path)]


def test_operand_info_of_control_and_debug_register_moves(tmp_path):
    got = infos(["mov cr3, ebx", "mov esi, cr0", "mov dr7, eax", "mov eax, dr6"], 32, tmp_path)
    assert got == [
        SpecialRegisterMove("cr", 3, "ebx", True),
        SpecialRegisterMove("cr", 0, "esi", False),
        SpecialRegisterMove("dr", 7, "eax", True),
        SpecialRegisterMove("dr", 6, "eax", False),
    ]
    assert got[0].register == "cr3"
    (cr8,) = infos(["mov cr8, r9"], 64, tmp_path)
    assert cr8 == SpecialRegisterMove("cr", 8, "r9", True)


def test_operand_info_of_port_io(tmp_path):
    sources = ["in al, 0x60", "in ax, dx", "out 0x80, eax", "out dx, al", "rep insw",
               "outsd", "rep outsb"]  # fmt: skip
    assert infos(sources, 32, tmp_path) == [
        PortAccess(0x60, 1, False, False, False, "al"),
        PortAccess(None, 2, False, False, False, "ax"),
        PortAccess(0x80, 4, True, False, False, "eax"),
        PortAccess(None, 1, True, False, False, "al"),
        PortAccess(None, 2, False, True, True, None),
        PortAccess(None, 4, True, True, False, None),
        PortAccess(None, 1, True, True, True, None),
    ]


def test_operand_info_memory_text_is_capstones_and_fits_lea(tmp_path):
    sources = ["lgdt [eax+8]", "lidt [0x1000]", "invlpg [ebx+ecx*4]", "sgdt fs:[eax]",
               "sidt [esp+4]"]  # fmt: skip
    got = infos(sources, 32, tmp_path)
    assert [m.text for m in got] == [
        "[eax + 8]", "[0x1000]", "byte ptr [ebx + ecx*4]", "fs:[eax]", "[esp + 4]",
    ]  # fmt: skip
    assert got[0] == MemoryOperand("[eax + 8]", "[eax + 8]", None, "eax", None, 1, 8, 6)
    assert got[2].address == "[ebx + ecx*4]" and got[2].index == "ecx" and got[2].scale == 4
    assert got[3].segment == "fs" and got[3].address == "[eax]"
    for memory in got:  # a stub re-uses the operand in lea; the checked assembler agrees
        isa.assemble_checked(f"lea eax, {memory.address}", 0x1000, 32)


def test_operand_info_of_segment_moves_and_register_operands(tmp_path):
    sources = ["mov eax, cs", "mov word ptr [eax], ss", "mov ss, ax", "push cs", "pop ss",
               "ltr ax", "lmsw bx"]  # fmt: skip
    assert infos(sources, 32, tmp_path) == [
        SegmentMove("cs", "eax", False),
        SegmentMove("ss", "word ptr [eax]", False),
        SegmentMove("ss", "eax", True),  # GNU as drops the pointless 0x66
        SegmentMove("cs", "", False),
        SegmentMove("ss", "", True),
        RegisterOperand("ax"),
        RegisterOperand("bx"),
    ]


def test_operand_info_is_none_without_operands(tmp_path):
    assert infos(["cli", "wrmsr", "iretd"], 32, tmp_path) == [None, None, None]


@pytest.mark.parametrize("mode, forms", [(32, FORMS_32), (64, FORMS_64)])
def test_the_lite_pre_filter_passes_every_form_of_every_class(mode, forms, tmp_path):
    code = gnu_assemble([source for source, _ in forms], mode, tmp_path)
    lite = list(isa.decode_all_lite(code, 0x1000, mode))
    assert len(lite) == len(forms)
    assert [text for text, (_, _, mnemonic, op_str) in zip(forms, lite, strict=True)
            if not may_classify(mnemonic, op_str)] == []


@settings(max_examples=3000, deadline=None)
@given(code=st.binary(min_size=1, max_size=15), mode=st.sampled_from([32, 64]))
def test_the_lite_pre_filter_never_drops_an_instruction_classify_takes(code, mode):
    full = isa.decode_one(code, 0x1000, mode)
    if full is not None and classify(full) is not None:
        _, _, mnemonic, op_str = isa.decode_one_lite(code, 0x1000, mode)
        assert may_classify(mnemonic, op_str), (code.hex(), full.mnemonic, full.op_str)
