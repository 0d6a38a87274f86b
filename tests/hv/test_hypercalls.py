"""The small hypercalls, the dispatch table and argument checking: console_io,
xen_version, sched_op, vm_assist, physdev_op, multicall, unknown numbers and bad
pointers (XEN-ABI.md). A guest-level test goes through the hypercall page and reads
EAX; a unit test calls pvtool.hv.hypercalls.call on a domain that has not run.
"""

import struct

import pytest

from pvtool.machine.cpu import ESI
from pvtool.machine.stop import StopKind
from tests.hv.harness import hypercall
from tests.hv.xenguest import EFAULT, EINVAL, ENOSYS, HC, neg

PAGE = 4096
HYPERVISOR_BASE = 0xFC000000
UNMAPPED = 0x40000000
SI_PT_BASE = 60
MULTICALL_ENTRY = "<8I"  # op, result, args[6] (XEN-ABI.md: 32 bytes on x86-32)

SCRATCH = r"""
buf:    .skip 4096
more:   .skip 4096
"""


# -- console_io ---------------------------------------------------------------------------
def test_console_io_write_from_the_guest_reaches_the_output(run_guest):
    booted = run_guest(r"""
    mov ebx, CONSOLEIO_write
    mov ecx, msg_end - msg
    mov edx, offset msg
    HYPERCALL console_io
    mov [rc], eax
""", data='msg: .ascii "hello from a Xen guest\\n\\0\\xff"\nmsg_end:\nrc: .long 0xffffffff')
    assert booted.u32("rc") == 0
    assert bytes(booted.output) == b"hello from a Xen guest\n\0\xff"


def test_console_io_writes_exactly_count_bytes(idle):
    idle.write("buf", b"abcdef")
    assert hypercall(idle, HC.console_io, 0, 3, idle.guest["buf"]) == 0
    assert hypercall(idle, HC.console_io, 0, 0, idle.guest["buf"]) == 0
    assert bytes(idle.output) == b"abc"


def test_console_io_reads_across_pages(idle):
    start = idle.guest["more"] - 5
    idle.write(start, b"01234567890")
    assert hypercall(idle, HC.console_io, 0, 11, start) == 0
    assert bytes(idle.output) == b"01234567890"


@pytest.mark.parametrize("where", ["unmapped", "hypervisor", "straddles-hypervisor",
                                   "runs-off-the-mapping"])
def test_console_io_from_a_buffer_it_cannot_read_is_efault_and_prints_nothing(idle, where):
    address, count = {
        "unmapped": (UNMAPPED, 4),
        "hypervisor": (0xFC410000, 4),  # shared_info: mapped, but the hypervisor's
        "straddles-hypervisor": (HYPERVISOR_BASE - 2, 4),
        "runs-off-the-mapping": (0x400000 - 2, 4),
    }[where]
    assert hypercall(idle, HC.console_io, 0, count, address) == neg(EFAULT)
    assert bytes(idle.output) == b""


def test_an_unknown_console_io_command_is_enosys(idle):
    assert hypercall(idle, HC.console_io, 7, 1, idle.guest["buf"]) == neg(ENOSYS)


# -- xen_version ----------------------------------------------------------------------------
def test_xen_version_answers_a_3_0_compatible_version(run_guest):
    booted = run_guest(r"""
    xor ebx, ebx
    xor ecx, ecx
    HYPERCALL xen_version
    mov [version], eax
""", data="version: .long 0")
    version = booted.u32("version")
    assert version >> 16 >= 3  # the guest's XEN_VERSION note asks for xen-3.0
    assert version & 0xFFFF < 100


def test_xen_version_extraversion_fills_its_16_byte_buffer(idle):
    buf = idle.guest["buf"]
    idle.write(buf, b"\xa5" * 32)
    assert hypercall(idle, HC.xen_version, 1, buf) == 0
    extra = idle.memory.read_phys(buf, 32)
    assert b"\0" in extra[:16]  # NUL-terminated within xen_extraversion_t
    assert extra[16:] == b"\xa5" * 16  # and not a byte more


def test_xen_version_pagesize_is_4096(idle):
    assert hypercall(idle, HC.xen_version, 7, 0) == 4096


def test_xen_version_into_a_read_only_page_is_efault(idle):
    pt_base = idle.u32(idle.cpu.read(ESI) + SI_PT_BASE)
    before = idle.memory.read_phys(pt_base, 16)
    assert hypercall(idle, HC.xen_version, 1, pt_base) == neg(EFAULT)
    assert idle.memory.read_phys(pt_base, 16) == before


def test_an_unknown_xen_version_command_is_enosys(idle):
    assert hypercall(idle, HC.xen_version, 0x999, idle.guest["buf"]) == neg(ENOSYS)


# -- sched_op ---------------------------------------------------------------------------------
def test_sched_op_yield_returns_0_and_the_guest_goes_on(run_guest):
    booted = run_guest(r"""
    mov ebx, SCHEDOP_yield
    xor ecx, ecx
    HYPERCALL sched_op
    mov [rc], eax
""", data="rc: .long 0xffffffff")
    assert booted.u32("rc") == 0
    assert booted.machine.stop.reason == "shutdown (poweroff)"


@pytest.mark.parametrize("reason", [0, 1, 3], ids=["poweroff", "reboot", "crash"])
def test_sched_op_shutdown_stops_the_domain_with_its_reason(run_guest, reason):
    booted = run_guest(f"""
    SHUTDOWN {reason}
    mov dword ptr [after], 1
""", data="after: .long 0")
    stop = booted.machine.stop
    assert stop.kind is StopKind.SHUTDOWN
    assert stop.code == reason
    assert booted.u32("after") == 0


def test_sched_op_compat_takes_the_shutdown_reason_by_value(run_guest):
    booted = run_guest(r"""
    mov ebx, SCHEDOP_shutdown
    mov ecx, 1      /* reboot */
    HYPERCALL sched_op_compat
""")
    assert booted.machine.stop.kind is StopKind.SHUTDOWN
    assert booted.machine.stop.code == 1


@pytest.mark.parametrize("case", ["bad-reason", "unmapped-arg", "hypervisor-arg",
                                  "unknown-cmd"])
def test_a_refused_sched_op_returns_an_error_and_the_domain_runs_on(run_guest, case):
    cmd, arg, expected = {
        "bad-reason": ("SCHEDOP_shutdown", "offset reason_9", EINVAL),
        "unmapped-arg": ("SCHEDOP_shutdown", "0x40000000", EFAULT),
        "hypervisor-arg": ("SCHEDOP_shutdown", "0xfc000000", EFAULT),
        "unknown-cmd": ("77", "offset reason_9", ENOSYS),
    }[case]
    booted = run_guest(f"""
    mov ebx, {cmd}
    mov ecx, {arg}
    HYPERCALL sched_op
    mov [rc], eax
""", data="rc: .long 0\nreason_9: .long 9")
    assert booted.u32("rc") == neg(expected)
    assert booted.machine.stop.reason == "shutdown (poweroff)"


# -- unknown hypercalls and the dispatch ------------------------------------------------------
@pytest.mark.parametrize("number", [11, 47, 56, 99, 127])
def test_an_unknown_hypercall_through_the_page_is_enosys(run_guest, number):
    booted = run_guest(f"""
    mov ebx, 1
    call hypercall_page + {number} * 32
    mov [rc], eax
""", data="rc: .long 0")
    assert booted.u32("rc") == neg(ENOSYS)


def test_a_hypercall_number_beyond_the_page_made_with_int_0x82_is_enosys(run_guest):
    booted = run_guest(r"""
    mov eax, 0x80000000
    int 0x82
    mov [rc], eax
""", data="rc: .long 0")
    assert booted.u32("rc") == neg(ENOSYS)


def test_a_hypercall_keeps_the_registers_it_does_not_return(run_guest):
    """Only EAX carries the result; the argument registers and the stack survive."""
    booted = run_guest(r"""
    mov ebx, 0x1
    mov ecx, 0x22
    mov edx, 0x333
    mov esi, 0x4444
    mov edi, 0x55555
    mov ebp, 0x666666
    mov [esp_before], esp
    mov eax, 7
    int 0x82
    mov [regs], ebx
    mov [regs + 4], ecx
    mov [regs + 8], edx
    mov [regs + 12], esi
    mov [regs + 16], edi
    mov [regs + 20], ebp
    mov [regs + 24], esp
""", data="regs: .fill 7, 4, 0\nesp_before: .long 0")
    assert booted.u32s("regs", 7) == (0x1, 0x22, 0x333, 0x4444, 0x55555, 0x666666,
                                      booted.u32("esp_before"))


# -- pointers the hypervisor cannot use ----------------------------------------------------------
@pytest.mark.parametrize("number", [HC.set_trap_table, HC.multicall, HC.set_gdt,
                                    HC.mmu_update, HC.mmuext_op])
@pytest.mark.parametrize("pointer", [UNMAPPED, HYPERVISOR_BASE, 0xFC400000, 0xFFFFFFF0],
                         ids=["unmapped", "m2p", "gdt", "top"])
def test_an_argument_pointer_into_unmapped_memory_or_the_hypervisor_is_efault(
        idle, number, pointer):
    assert hypercall(idle, number, pointer, 1) == neg(EFAULT)


def test_set_trap_table_without_a_terminating_entry_is_einval(idle):
    entry = struct.pack("<BBHI", 3, 3, 0xE019, idle.guest["buf"])
    idle.write("buf", entry * 512)  # 4 KiB of valid-looking entries, no terminator
    idle.write("more", entry * 512)
    assert hypercall(idle, HC.set_trap_table, idle.guest["buf"]) == neg(EINVAL)


# -- vm_assist, physdev_op ------------------------------------------------------------------------
def test_vm_assist_knows_writable_pagetables_and_refuses_unknown_assists(idle):
    assert hypercall(idle, HC.vm_assist, 0, 2) == 0  # enable writable_pagetables
    assert hypercall(idle, HC.vm_assist, 1, 2) == 0  # disable it
    assert hypercall(idle, HC.vm_assist, 0, 17) == neg(EINVAL)
    assert hypercall(idle, HC.vm_assist, 9, 2) == neg(EINVAL)


PORT_OUT = r"""
    mov dx, 0x3f8
    mov al, 'X'
    out dx, al
    mov dword ptr [after_out], 1
"""


def test_port_io_reaches_the_devices_after_physdev_op_set_iopl(run_guest):
    booted = run_guest(r"""
    mov ebx, 6            /* PHYSDEVOP_set_iopl */
    mov ecx, offset iopl
    HYPERCALL physdev_op
    mov [rc], eax
""" + PORT_OUT, data="iopl: .long 1\nrc: .long 0xffffffff\nafter_out: .long 0")
    assert booted.u32("rc") == 0
    assert bytes(booted.output) == b"X"
    assert booted.u32("after_out") == 1


def test_port_io_without_io_privilege_never_reaches_a_device(run_guest):
    """It is a #GP(0) for the kernel (tests/hv/test_io_privilege.py); this kernel has
    no handler for it, so Xen crashes the domain on the bounce."""
    booted = run_guest(PORT_OUT, data="after_out: .long 0")
    assert bytes(booted.output) == b""
    assert booted.u32("after_out") == 0
    assert booted.machine.stop.kind is StopKind.CRASH
    assert "#GP at" in booted.machine.stop.reason


def test_physdev_op_refuses_an_iopl_above_3(idle):
    idle.write_u32s("buf", 4)
    assert hypercall(idle, HC.physdev_op, 6, idle.guest["buf"]) == neg(EINVAL)


# -- multicall ----------------------------------------------------------------------------------
def multicall_entries(*entries):
    return b"".join(struct.pack(MULTICALL_ENTRY, op, 0xA5A5A5A5, *args, *[0] * (6 - len(args)))
                    for op, *args in entries)


def test_multicall_runs_every_entry_and_writes_each_result_back(idle):
    buf, text = idle.guest["buf"], idle.guest["more"]
    idle.write(text, b"abc")
    idle.write(buf, multicall_entries(
        (HC.xen_version, 7, 0),
        (HC.console_io, 0, 3, text),
        (99, 0),
        (HC.update_va_mapping, text, idle.machine.ram_size | 0x63, 0, 2),
        (HC.console_io, 0, 2, UNMAPPED),
    ))
    assert hypercall(idle, HC.multicall, buf, 5) == 0
    results = [struct.unpack_from(MULTICALL_ENTRY, idle.memory.read_phys(buf + 32 * i, 32))[1]
               for i in range(5)]
    assert results == [4096, 0, neg(ENOSYS), neg(EINVAL), neg(EFAULT)]
    assert bytes(idle.output) == b"abc"


def test_multicall_from_the_guest(run_guest):
    booted = run_guest(r"""
    mov ebx, offset calls
    mov ecx, 2
    HYPERCALL multicall
    mov [rc], eax
""", data=r"""
calls:
    .long HC_console_io, 0xa5a5a5a5, CONSOLEIO_write, 3, text, 0, 0, 0
    .long HC_console_io, 0xa5a5a5a5, CONSOLEIO_write, 2, text + 3, 0, 0, 0
text: .ascii "multi"
rc: .long 0xffffffff
""")
    assert booted.u32("rc") == 0
    assert bytes(booted.output) == b"multi"
    assert booted.u32("calls", 1) == 0 and booted.u32("calls", 9) == 0


@pytest.mark.parametrize("count", [1 << 20, 0xFFFFFFFF])
def test_multicall_refuses_a_huge_count_before_running_anything(idle, count):
    buf, text = idle.guest["buf"], idle.guest["more"]
    idle.write(text, b"abc")
    idle.write(buf, multicall_entries((HC.console_io, 0, 3, text)))
    assert hypercall(idle, HC.multicall, buf, count) == neg(EINVAL)
    assert bytes(idle.output) == b""
    assert struct.unpack_from("<I", idle.memory.read_phys(buf + 4, 4))[0] == 0xA5A5A5A5


def test_xen_version_get_features_answers_submap_0_and_refuses_other_indexes(idle):
    """struct xen_feature_info {u32 submap_idx; u32 submap}: the guest names the
    submap; x86 Xen has only submap 0 and returns -EINVAL for any other."""
    buf = idle.guest["buf"]
    idle.write_u32s(buf, 0, 0xFFFFFFFF)
    assert hypercall(idle, HC.xen_version, 6, buf) == 0
    assert idle.u32(buf) == 0  # the index is left as asked
    idle.write_u32s(buf, 1, 0x5A5A5A5A)
    assert hypercall(idle, HC.xen_version, 6, buf) == neg(EINVAL)
    assert idle.u32s(buf, 2) == (1, 0x5A5A5A5A)


# Every number xen/include/public/xen.h defines beyond those pvtool serves, by its name.
XEN_H_NAMES = {7: "platform_op", 16: "event_channel_op_compat", 19: "physdev_op_compat",
               22: "update_va_mapping_otherdomain", 24: "vcpu_op", 25: "set_segment_base",
               27: "xsm_op", 28: "nmi_op", 31: "xenoprof_op", 34: "hvm_op", 35: "sysctl",
               36: "domctl", 37: "kexec_op", 38: "tmem_op", 39: "argo_op", 40: "xenpmu_op",
               41: "dm_op", 42: "hypfs_op"}


@pytest.mark.parametrize("number", sorted(XEN_H_NAMES))
def test_a_hypercall_pvtool_does_not_serve_is_counted_by_xens_name(idle, number):
    hypercall(idle, number, 0, 0)
    assert idle.domain.hypercall_counts[XEN_H_NAMES[number]] == 1
    assert not any(name.startswith("hypercall_") for name in idle.domain.hypercall_counts)


def test_a_number_xen_h_leaves_undefined_keeps_its_number(idle):
    assert hypercall(idle, 43, 0) == neg(ENOSYS)
    assert idle.domain.hypercall_counts["hypercall_43"] == 1
