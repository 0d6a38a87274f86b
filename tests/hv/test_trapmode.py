"""`pvtool run --trap`: unpatched kernels in ring 1, trap-and-emulate (hv/trapmode.py).

What the guests print is predicted from the catalogue: a check that rests on an
instruction that faults when deprivileged is emulated and passes; one that rests on a
sensitive instruction that does not fault runs on the CPU and shows the hypervisor's
state, so it FAILs. Everything else they print is their native output.
"""

import json
from functools import partial

import pytest

from pvtool.hv import layout
from pvtool.machine.stop import StopKind
from pvtool.run import Mode, RunOptions, run_image
from pvtool.x86.catalogue import by_name
from tests import cli
from tests.guests_asm.build import GuestBuilder
from tests.oracles import guest_path

# Each self-test line, and the catalogue class whose behaviour in ring 1 decides it.
# cli faults and is emulated (and the hardware IF follows the virtual one, see
# hv/trapemulate.py), so pushf sees it; popf, sgdt and sidt do not fault.
DECIDED_BY = {
    "selftest: after cli, pushf shows IF clear": "cli",
    "selftest: popf restores IF, set and clear": "popf",
    "selftest: sgdt returns what lgdt loaded": "sgdt",
    "selftest: sidt returns what lidt loaded": "sidt",
    "eflags: cli clears IF, sti sets it": "cli",
    "eflags: popf restores IF set and clear": "popf",
}
CHECKS_PER_LINE = {"selftest: popf restores IF, set and clear": 2,
                   "selftest: sgdt returns what lgdt loaded": 2,
                   "selftest: sidt returns what lidt loaded": 2,
                   "eflags: popf restores IF set and clear": 2}


pvtool = partial(cli.pvtool, process=True, timeout=300)  # the real process's status


def predicted(native: str, name: str) -> str:
    """The native output with each self-test verdict the hardware decides, and the
    guest's closing count."""
    lines, failed, total = [], 0, None
    for line in native.splitlines():
        for prefix, cls in DECIDED_BY.items():
            if line.startswith(prefix) and not by_name(cls).faults_when_deprivileged:
                line = line.replace(" ok", " FAIL")
                failed += CHECKS_PER_LINE.get(prefix, 1)
        if line.startswith(f"{name}: all "):
            total = int(line.split()[2])
            line = f"{name}: {failed} of {total} checks FAILED"
        lines.append(line)
    assert total is not None, "the native run did not pass every check"
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module", params=["hello", "minikern"])
def runs(request, tmp_path_factory):
    elf = guest_path(request.param)
    summary = tmp_path_factory.mktemp("trap") / "run.json"
    native = pvtool("run", "--native", "--quiet", str(elf))
    trap = pvtool("run", "--trap", "--json", summary, str(elf))
    return request.param, native, (trap, json.loads(summary.read_text()))


def test_trap_mode_output_is_native_except_the_predicted_failures(runs):
    name, native, (trap, _) = runs
    assert native.status == 0
    assert trap.stdout == predicted(native.stdout, name)
    assert trap.status == 1  # the guest's own verdict: some checks failed


def test_the_failures_are_the_non_faulting_sensitive_instructions(runs):
    _, _, (trap, _) = runs
    failing = {line.split(" FAIL")[0] for line in trap.stdout.splitlines()
               if line.endswith(" FAIL")}
    assert failing == {prefix for prefix, cls in DECIDED_BY.items()
                       if prefix in trap.stdout
                       and not by_name(cls).faults_when_deprivileged}


def test_summary_lists_the_sensitive_instructions_that_ran(runs):
    name, _, (_, summary) = runs
    assert summary["mode"] == "trap"
    uses = summary["sensitive"]
    assert uses and all(u["count"] > 0 and u["address"] >= 0x100000 for u in uses)
    assert all(not by_name(u["class"]).faults_when_deprivileged for u in uses)
    classes = {u["class"] for u in uses}
    assert {"pushf", "popf"} <= classes
    if name == "minikern":
        assert {"sgdt", "sidt", "iret"} <= classes  # iret to ring 3 runs on the CPU
        popfs = [u for u in uses if u["class"] == "popf"]
        assert [u["count"] for u in popfs] == [1, 1]  # the two writeeflags of popf's test
    assert summary["exits"]["emulated"] > 0


def test_the_human_summary_names_addresses_and_counts():
    done = pvtool("run", "--trap", str(guest_path("hello")))
    text = done.stderr
    assert "sensitive instructions that ran untrapped" in text
    assert "popfd" in text and "0x001" in text


# ---- isolation: the kernel's page tables are validated exactly as in PV mode -------

GDT_FRAME = layout.GDT
ESCAPES = {
    # A store into a live page table goes through ptwr: a valid entry is written...
    "valid": """
    .globl test_main
test_main:
    call paging_on
    movl $0x200003, PAGE_TABLE + 0x280 * 4
    invlpg 0x280000
    movl $0x5AFE, 0x200000
    REC 0x280000
    xor %eax, %eax
    ret
""",
    # ...one mapping a hypervisor frame is refused, and the domain crashes.
    "map_hypervisor": f"""
    .globl test_main
test_main:
    call paging_on
    movl ${GDT_FRAME | 3:#x}, PAGE_TABLE + 0x280 * 4
    REC $0xBAD
    xor %eax, %eax
    ret
""",
    # A new base that maps a hypervisor frame is refused when CR3 is loaded.
    "new_base": f"""
    .set DIR2, 0x304000
    .set TABLE2, 0x305000
    .globl test_main
test_main:
    movl ${GDT_FRAME | 3:#x}, TABLE2
    movl $TABLE2 + 3, DIR2
    call paging_on
    mov $DIR2, %eax
    mov %eax, %cr3
    REC $0xBAD
    xor %eax, %eax
    ret
""",
    # The hypervisor's range is read-only to ring 1: the store faults, and with no
    # handler in the (empty) IDT the domain crashes, where a PC would reset.
    "write_gdt": f"""
    .globl test_main
test_main:
    movl $0, {GDT_FRAME + 8:#x}
    REC $0xBAD
    xor %eax, %eax
    ret
""",
}


@pytest.fixture(scope="module")
def escape(tmp_path_factory):
    builder = GuestBuilder(tmp_path_factory.mktemp("trap-guests"))
    source = '.include "macros.inc"\n'

    def run(name: str):
        out = bytearray()
        elf = builder.build(source + ESCAPES[name]).elf
        return run_image(elf, RunOptions(mode=Mode.TRAP, max_insns=5_000_000),
                         out.extend), bytes(out)

    return run


def test_a_valid_page_table_store_is_validated_and_written(escape):
    result, out = escape("valid")
    assert result.stop.kind is StopKind.GUEST_EXIT and result.stop.code == 0
    assert out == b"00005afe\n"
    assert result.exits["ptwr"] >= 1


@pytest.mark.parametrize("name, reason", [
    ("map_hypervisor", "not the domain's"),
    ("new_base", "which the domain does not own"),
    ("write_gdt", "vector 14"),  # the #PF, which its empty IDT cannot take
])
def test_the_kernel_cannot_reach_the_hypervisor(escape, name, reason):
    result, out = escape(name)
    assert result.stop.kind is StopKind.CRASH, result.stop.describe()
    assert reason in result.stop.reason
    assert b"BAD" not in out


# ---- delivery: the kernel's own IDT, as the CPU delivers it --------------------

REFUSED_FROM_RING3 = """
    .include "macros.inc"
    .globl test_main
    .set RING0_STACK, 0x360000
    .set USER_STACK, 0x370000
test_main:
    SETGATE IDT_BASE, 13, on_gp
    SETGATE IDT_BASE, 3, on_user_int                # DPL 0: not for ring 3
    SETGATE IDT_BASE, 4, on_user_int
    TO_RING3 tss, RING0_STACK, user_code, USER_STACK
user_code:
    mov $0x33, %ax
    mov %ax, %ds
    mov %ax, %es
    mov $0x7fffffff, %eax
    add $1, %eax                                    # OF set, for into
    .globl refused
refused:
    {insn}
    jmp .
on_user_int:
    mov $4, %eax
    jmp finish
on_gp:
    REC 0(%esp)                                     # the error code
    REC 4(%esp)                                     # the return address
    REC 8(%esp)
    xor %eax, %eax
    jmp finish
    .data
    .align 4
tss: .space 104
"""


@pytest.mark.parametrize("insn", [".byte 0xcd, 3", "int3", "into"],
                         ids=["int $3 (cd 03)", "int3", "into"])
def test_a_refused_software_interrupt_reports_its_own_address_as_natively(
        tmp_path, insn):
    """`int $3` (cd 03; GNU as writes int3 for it) is two bytes, int3 and into one:
    the #GP of a DPL-0 gate
    raised from ring 3 returns to the instruction itself, in trap mode as on the CPU."""
    guest = GuestBuilder(tmp_path).build(REFUSED_FROM_RING3.replace("{insn}", insn))
    outputs = []
    for mode in (Mode.NATIVE, Mode.TRAP):
        out = bytearray()
        result = run_image(guest.elf, RunOptions(mode=mode, max_insns=1_000_000),
                           out.extend)
        assert result.stop.kind is StopKind.GUEST_EXIT and result.stop.code == 0, mode
        outputs.append(bytes(out))
    vector = 4 if insn == "into" else 3
    assert outputs[0] == b"%08x\n%08x\n%08x\n" % (vector * 8 + 2, guest["refused"], 0x2B)
    assert outputs[1] == outputs[0]
