"""Privileged instructions a PV kernel still executes in ring 1: they fault, Xen
emulates the ones it knows and counts them, and bounces #GP for the rest
(XEN-ABI.md, "Traps, events, iret"; DESIGN.md, "The hypervisor"). What is emulated
is one table per mode, checked when it loads against the classes a trap site may
stand for (abi/pvtool.py TRAP_SITE_CLASSES).

The first tests go through pvtool's own run loop (pvtool.run.run_image) and read
the guest's findings from what it writes with console_io.
"""

import struct
import subprocess
import sys

import pytest

from pvtool.abi.pvtool import TRAP_SITE_CLASSES
from pvtool.hv.emulate import PV_HANDLERS, check_handlers
from pvtool.hv.trapemulate import TRAP_HANDLERS
from pvtool.machine.cpu import CR3
from pvtool.machine.stop import StopKind
from pvtool.run import Mode, RunOptions, run_image
from tests.hv.harness import boot
from tests.hv.xenguest import STALE_TRANSLATION, STALE_TRANSLATION_DATA, trap_site_note
from tests.oracles import REPO_ROOT

PAGE = 4096
CR0_PE, CR0_PG = 1, 1 << 31

REPORT = r"""
    mov ebx, CONSOLEIO_write
    mov ecx, {size}
    mov edx, offset report
    HYPERCALL console_io
"""


def run_pv(guest, **options):
    output = bytearray()
    result = run_image(guest.path, RunOptions(mode=Mode.PV, ram_size=16 << 20,
                                              max_insns=5_000_000, **options),
                       output.extend)
    return result, bytes(output)


def test_unpatched_privileged_instructions_are_emulated_and_counted(build):
    """With I/O privilege (physdev_op set_iopl 1) Xen takes a ring-1 cli and sti
    without effect on the upcall mask (emul-priv-op.c, validate()), and answers the
    MSRs it exposes: MISC_ENABLE reads as guest_misc_enable() gives it and takes its
    own value back."""
    guest = build(r"""
    MAP_SHARED_INFO shared_page
    mov ebx, 6      /* PHYSDEVOP_set_iopl */
    mov ecx, offset iopl_1
    HYPERCALL physdev_op
    mov eax, cr0
    mov [report], eax
    movzx eax, byte ptr [shared_page + VCPU_upcall_mask]
    mov [report + 4], eax
    cli
    movzx eax, byte ptr [shared_page + VCPU_upcall_mask]
    mov [report + 8], eax
    sti
    movzx eax, byte ptr [shared_page + VCPU_upcall_mask]
    mov [report + 12], eax
    mov ecx, 0x1a0  /* MSR_IA32_MISC_ENABLE */
    rdmsr
    mov [report + 16], eax
    mov [report + 20], edx
    wrmsr
    wbinvd
    clts
    mov eax, 0xc0ffee
    mov [report + 24], eax
""" + REPORT.format(size=28), data="report: .fill 7, 4, 0xffffffff\niopl_1: .long 1",
        bss="shared_page: .skip 4096")
    result, output = run_pv(guest)
    assert result.stop.kind is StopKind.SHUTDOWN and result.stop.code == 0
    cr0, mask, mask_after_cli, mask_after_sti, misc_lo, misc_hi, marker = struct.unpack(
        "<7I", output)
    assert marker == 0xC0FFEE
    assert cr0 & (CR0_PE | CR0_PG) == CR0_PE | CR0_PG  # protected mode, paging on
    assert mask_after_cli == mask_after_sti == mask
    # BTS and PEBS unavailable (bits 11, 12), xTPR disabled (23); perfmon hidden
    assert (misc_lo, misc_hi) == (1 << 11 | 1 << 12 | 1 << 23, 0)
    # mov from cr0, cli, sti, rdmsr, wrmsr, wbinvd, clts: seven faults, all emulated.
    assert result.exits["emulated"] == 7
    assert result.exits["exception"] == 0  # an exit is counted once, by what was done


def test_mov_from_cr3_reads_the_current_page_directory(build):
    """Xen answers a PV kernel's `mov eax, cr3` with the machine address of its
    current base: at boot, start_info.pt_base's frame."""
    guest = build(r"""
    mov eax, cr3
    mov [report], eax
    mov eax, [start_info_ptr]
    mov eax, [eax + SI_pt_base]
    mov [report + 4], eax
""" + REPORT.format(size=8), data="report: .fill 2, 4, 0xffffffff")
    result, output = run_pv(guest)
    cr3, pt_base = struct.unpack("<2I", output)
    assert cr3 == pt_base  # VIRT_BASE 0: the virtual address is the machine address
    assert result.exits["emulated"] == 1


def test_an_instruction_xen_does_not_emulate_is_a_gp_for_the_guest(build):
    guest = build(r"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
lgdt_insn:
    lgdt [pseudo_descriptor]
    mov dword ptr [report + 8], 0xc0ffee
""" + REPORT.format(size=12), handlers=r"""
gp_handler:
    pop dword ptr [report]         /* error code */
    mov eax, [esp]
    mov [report + 4], eax          /* EIP */
    add dword ptr [esp], 7         /* past the 7-byte lgdt */
    HYPERVISOR_IRET
""", data=r"""
trap_table:
    TRAP 13, 0, gp_handler
    .long 0, 0
pseudo_descriptor: .word 0xffff
    .long 0
report: .fill 3, 4, 0xffffffff
""")
    result, output = run_pv(guest)
    error, eip, marker = struct.unpack("<3I", output)
    assert (error, eip, marker) == (0, guest["lgdt_insn"], 0xC0FFEE)
    assert result.exits["emulated"] == 0
    assert result.exits["exception"] == 1


def test_mov_from_cr2_reads_the_address_of_the_last_page_fault(run_guest):
    booted = run_guest(r"""
    mov ebx, offset trap_table
    HYPERCALL set_trap_table
    mov eax, [0x40000abc]
after_fault:
""", handlers=r"""
pf_handler:
    mov eax, cr2
    mov [cr2_seen], eax
    add esp, 4
    mov dword ptr [esp], offset after_fault
    HYPERVISOR_IRET
""", data=r"""
trap_table:
    TRAP 14, 0, pf_handler
    .long 0, 0
cr2_seen: .long 0
""")
    assert booted.u32("cr2_seen") == 0x40000ABC
    assert booted.machine.exits["emulated"] == 1


def test_an_emulated_invlpg_drops_a_stale_translation(build):
    booted = boot(build(STALE_TRANSLATION + r"""
    invlpg [frames]
    mov eax, [frames]
    mov [after], eax
""", data=STALE_TRANSLATION_DATA, bss="frames: .skip 8192"))
    frames = booted.guest["frames"]
    booted.remap_behind_the_tlb(frames, (frames + PAGE) | 0x63)
    booted.run()
    assert booted.u32("stale") == 0xAAAA0000
    assert booted.u32("after") == 0xBBBB1111
    assert booted.machine.exits["emulated"] == 1


def test_mov_to_cr3_reloads_a_valid_base_and_refuses_an_invalid_one(build):
    booted = boot(build(r"""
    mov eax, cr3
    mov cr3, eax
    mov dword ptr [reloaded], 1
    mov eax, offset bad_directory
    mov cr3, eax
    mov dword ptr [switched], 1
""", data="reloaded: .long 0\nswitched: .long 0",
        bss="bad_directory: .skip 4096"))
    cr3 = booted.cpu.read(CR3)
    # A directory whose slot 0 points past the domain's memory.
    booted.write_u32s("bad_directory", booted.machine.ram_size | 0x67)
    booted.run()
    assert booted.u32("reloaded") == 1
    assert booted.u32("switched") == 0
    assert booted.cpu.read(CR3) == cr3
    assert booted.machine.stop.kind is StopKind.CRASH


@pytest.mark.parametrize("register", [0, 3, 7])
def test_debug_register_moves_are_emulated(run_guest, register):
    """XEN-ABI.md: Xen emulates mov to and from CR and DR for a PV kernel."""
    booted = run_guest(f"""
    mov eax, 0x400
    mov dr{register}, eax
    xor eax, eax
    mov eax, dr{register}
    mov [seen], eax
""", data="seen: .long 0xffffffff")
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("seen") == 0x400
    assert booted.machine.exits["emulated"] == 2


def test_a_recorded_trap_site_is_emulated_as_its_original_instruction(run_guest):
    """An int3 the patcher left in place of `cli` (a pvtool trap_sites note): the
    hypervisor emulates cli and resumes after the original instruction's length."""
    booted = run_guest(r"""
    MAP_SHARED_INFO shared_page
    mov byte ptr [shared_page + VCPU_upcall_mask], 0
kernel_site:
    int3
    movzx eax, byte ptr [shared_page + VCPU_upcall_mask]
    mov [mask_after], eax
""", handlers=trap_site_note(("kernel_site", b"\xfa")),
        data="mask_after: .long 0xff", bss="shared_page: .skip 4096")
    assert booted.machine.stop.reason == "shutdown (poweroff)"
    assert booted.u32("mask_after") == 1
    assert booted.machine.exits["trap-site"] == 1


# ---- the tables: checked against the classes a trap site may stand for ------------------


def test_the_emulator_refuses_to_start_when_a_trap_site_class_has_no_handler():
    """abi/pvtool.py's TRAP_SITE_CLASSES is the patcher's promise; hv/emulate.py checks
    when it is imported that its table keeps it, so a class added there without a
    handler stops pvtool at start-up, naming the class."""
    code = ("import pvtool.abi.pvtool as abi\n"
            "abi.TRAP_SITE_CLASSES = abi.TRAP_SITE_CLASSES | {'lgdt'}\n"
            "import pvtool.hv.emulate\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, check=False)
    assert done.returncode != 0
    assert "no handler for ['lgdt']" in done.stderr


@pytest.mark.parametrize("change, named", [
    (lambda t: t.pop("sysexit"), "no handler for ['sysexit']"),
    (lambda t: t.update(lgdt=t["cli"]), "handlers beyond TRAP_SITE_CLASSES ['lgdt']"),
    (lambda t: t.update(mov_to_cr9=t["cli"]), "not catalogue classes ['mov_to_cr9']"),
])
def test_a_table_that_breaks_the_contract_is_named(change, named):
    table = dict(PV_HANDLERS)
    change(table)
    with pytest.raises(ImportError) as caught:
        check_handlers(table, TRAP_SITE_CLASSES, exactly=True)
    assert named in str(caught.value)


def test_the_trap_emulator_extends_the_pv_table_and_replaces_cli_sti_and_iret():
    """The trap mode's iret returns to the ring-0 CS of a kernel that owns the
    machine (no HYPERVISOR_iret frame), and its cli and sti move the real IF too."""
    assert set(TRAP_HANDLERS) - set(PV_HANDLERS) == {"lgdt", "lidt", "ltr"}
    replaced = {name for name in PV_HANDLERS if TRAP_HANDLERS[name] is not PV_HANDLERS[name]}
    assert replaced == {"cli", "sti", "iret"}
