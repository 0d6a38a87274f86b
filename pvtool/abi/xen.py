"""Numbers of the Xen PV ABI, from xen/include/public (xen.h, sched.h, event_channel.h,
callback.h, elfnote.h, arch-x86/xen-x86_32.h). pvtool-only extensions use the numbers
Xen leaves to the architecture (48-55) and are marked as such."""

from collections.abc import Callable
from enum import IntEnum


class Hypercall(IntEnum):
    set_trap_table = 0
    mmu_update = 1
    set_gdt = 2
    stack_switch = 3
    set_callbacks = 4
    fpu_taskswitch = 5
    sched_op_compat = 6
    platform_op = 7
    set_debugreg = 8
    get_debugreg = 9
    update_descriptor = 10
    memory_op = 12
    multicall = 13
    update_va_mapping = 14
    set_timer_op = 15
    event_channel_op_compat = 16
    xen_version = 17
    console_io = 18
    physdev_op_compat = 19
    grant_table_op = 20
    vm_assist = 21
    update_va_mapping_otherdomain = 22
    iret = 23
    vcpu_op = 24
    set_segment_base = 25
    mmuext_op = 26
    xsm_op = 27
    nmi_op = 28
    sched_op = 29
    callback_op = 30
    xenoprof_op = 31
    event_channel_op = 32
    physdev_op = 33
    hvm_op = 34
    sysctl = 35
    domctl = 36
    kexec_op = 37
    tmem_op = 38
    argo_op = 39
    xenpmu_op = 40
    dm_op = 41
    hypfs_op = 42
    # pvtool extension (arch_0): machine-wide virtual CPU registers an unmodified kernel
    # reads and writes (CR0, CR4, debug registers) that Xen PV keeps nowhere.
    arch_0 = 48
    arch_1 = 49
    arch_2 = 50
    arch_3 = 51
    arch_4 = 52
    arch_5 = 53
    arch_6 = 54
    arch_7 = 55


def hypercall_name(number: int) -> str:
    """Xen's name for hypercall NUMBER, or hypercall_NUMBER for one it lacks."""
    try:
        return Hypercall(number).name
    except ValueError:
        return f"hypercall_{number}"


HYPERCALL_ENTRY_SIZE = 32  # bytes per hypercall-page entry
HYPERCALL_PAGE_ENTRIES = 128
HYPERCALL_VECTOR_32 = 0x82  # int 0x82 on x86-32
# Where a hypercall's number and arguments are, and its result goes, by guest width
# (XEN-ABI.md; XEN-ABI64.md: `syscall`, RDI RSI RDX R10 R8, result in RAX).
HYPERCALL_NUMBER_REGISTER = {32: "eax", 64: "rax"}
HYPERCALL_ARGUMENT_REGISTERS = {32: ("ebx", "ecx", "edx", "esi", "edi"),
                                64: ("rdi", "rsi", "rdx", "r10", "r8")}


class Errno(IntEnum):
    """Xen's error numbers; a hypercall returns 0 or -errno."""

    EPERM = 1
    ENOENT = 2
    ESRCH = 3
    ENXIO = 6
    EACCES = 13
    EFAULT = 14
    EBUSY = 16
    EEXIST = 17
    ENODEV = 19
    EINVAL = 22
    ENOSPC = 28
    EDOM = 33
    ENOSYS = 38
    ENODATA = 61
    ETIME = 62
    EOPNOTSUPP = 95
    ENOBUFS = 105


class SchedOp(IntEnum):
    yield_ = 0
    block = 1
    shutdown = 2
    poll = 3


class ShutdownReason(IntEnum):
    poweroff = 0
    reboot = 1
    suspend = 2
    crash = 3
    watchdog = 4


class ConsoleIO(IntEnum):
    write = 0
    read = 1


class MmuextCmd(IntEnum):
    pin_l1_table = 0
    pin_l2_table = 1
    pin_l3_table = 2
    pin_l4_table = 3
    unpin_table = 4
    new_baseptr = 5
    tlb_flush_local = 6
    invlpg_local = 7
    tlb_flush_all = 10
    invlpg_all = 11
    set_ldt = 13
    new_user_baseptr = 15


class MmuUpdateCmd(IntEnum):
    normal_pt_update = 0
    machphys_update = 1
    pt_update_preserve_ad = 2


class UVMF(IntEnum):
    none = 0
    tlb_flush = 1
    invlpg = 2
    all = 4


UVMF_FLUSHTYPE_MASK = 3


class EvtchnOp(IntEnum):
    bind_interdomain = 0
    bind_virq = 1
    bind_pirq = 2
    close = 3
    send = 4
    status = 5
    alloc_unbound = 6
    bind_ipi = 7
    bind_vcpu = 8
    unmask = 9
    reset = 10
    init_control = 11
    expand_array = 12
    set_priority = 13
    reset_cont = 14


class EvtchnStatus(IntEnum):
    """evtchn_status.status (event_channel.h)."""

    closed = 0
    unbound = 1
    interdomain = 2
    pirq = 3
    virq = 4
    ipi = 5


class Virq(IntEnum):
    timer = 0
    debug = 1
    console = 2


NR_VIRQS = 24
DOMID_XEN = 0x7FF2  # the hypervisor's side of the console and xenstore ports
# pvtool's choices of domain ids. The guest is domain 1, the first domU as xl numbers
# it: its frames, its grants' and event channels' own id, its XenStore home. Its
# in-process backends (blkback, the store's toolstack) act as domain 0, the one a
# frontend names in its grant entries and alloc_unbound: every device's default
# backend-id in libxl.
HARDWARE_DOMID = 0  # Xen's hardware domain (is_hardware_domain), dom0 by default
GUEST_DOMID = 1
BACKEND_DOMID = HARDWARE_DOMID


class GnttabOp(IntEnum):
    """GNTTABOP_* (grant_table.h)."""

    map_grant_ref = 0
    unmap_grant_ref = 1
    setup_table = 2
    dump_table = 3
    transfer = 4
    copy = 5
    query_size = 6
    unmap_and_replace = 7
    set_version = 8
    get_status_frames = 9
    get_version = 10
    swap_grant_ref = 11
    cache_flush = 12


class GrantStatus(IntEnum):
    """GNTST_*: the per-operation status of grant_table_op (grant_table.h)."""

    okay = 0
    general_error = -1
    bad_domain = -2
    bad_gntref = -3
    bad_handle = -4
    bad_virt_addr = -5
    bad_dev_addr = -6
    no_device_space = -7
    permission_denied = -8
    bad_page = -9
    bad_copy_arg = -10
    address_too_big = -11
    eagain = -12
    no_space = -13


# grant_entry_v1.flags (grant_table.h): the type in bits 0-1, then the subflags.
GTF_TYPE_MASK = 3
GTF_PERMIT_ACCESS = 1
GTF_READONLY = 1 << 2
GTF_READING = 1 << 3  # set by Xen while the grant is in use for reading
GTF_WRITING = 1 << 4  # and for writing
GTF_SUB_PAGE = 1 << 8
GNTCOPY_SOURCE_GREF = 1
GNTCOPY_DEST_GREF = 2
GNTTAB_NR_RESERVED_ENTRIES = 8  # refs the toolstack may fill (0 console, 1 xenstore)


class XenMem(IntEnum):
    """XENMEM_* (memory.h); the command is cmd's low MEMOP_EXTENT_SHIFT bits."""

    increase_reservation = 0
    decrease_reservation = 1
    maximum_ram_page = 2
    current_reservation = 3
    maximum_reservation = 4
    machphys_mfn_list = 5
    populate_physmap = 6
    add_to_physmap = 7
    memory_map = 9
    machine_memory_map = 10
    exchange = 11
    machphys_mapping = 12
    set_memory_map = 13
    maximum_gpfn = 14
    remove_from_physmap = 15


MEMOP_EXTENT_SHIFT = 6  # cmd >> 6 is start_extent, a continuation's progress
XENMAPSPACE_GMFN_FOREIGN = 4  # add_to_physmap's space only the batch form takes
E820_RAM = 1


class CallbackOp(IntEnum):
    register = 0
    unregister = 1


class CallbackType(IntEnum):
    event = 0
    failsafe = 1
    syscall = 2
    nmi = 4
    sysenter = 5
    syscall32 = 7


CALLBACKF_MASK_EVENTS = 1


class VmAssist(IntEnum):
    enable = 0
    disable = 1


class VmAssistType(IntEnum):
    writable_pagetables = 2
    pae_extended_cr3 = 3
    architectural_iopl = 4  # the kernel's I/O privilege counts as ring 0's


class XenVer(IntEnum):
    """XENVER_* (public/version.h)."""

    version = 0
    extraversion = 1
    compile_info = 2
    capabilities = 3
    changeset = 4
    platform_parameters = 5
    get_features = 6
    pagesize = 7
    guest_handle = 8
    commandline = 9
    build_id = 10
    extraversion2 = 11
    capabilities2 = 12
    changeset2 = 13
    commandline2 = 14


class XenFeature(IntEnum):
    """XENFEAT_* bits of get_features' submap 0 (public/features.h)."""

    writable_page_tables = 0
    pae_pgdir_above_4gb = 4
    mmu_pt_update_preserve_ad = 5
    highmem_assist = 6
    gnttab_map_avail_bits = 7
    dom0 = 11
    memory_op_vnode_supported = 13
    not_direct_mapped = 16
    direct_mapped = 17
    runstate_phys_area = 18
    vcpu_time_phys_area = 19


# Sizes of xen_version's fixed buffers (public/version.h): xen_compile_info's four
# strings, xen_capabilities_info_t, xen_changeset_info_t, xen_domain_handle_t,
# xen_commandline_t.
COMPILE_INFO_SIZES = (64, 16, 32, 32)
CAPABILITIES_SIZE = 1024
CHANGESET_SIZE = 64
DOMAIN_HANDLE_SIZE = 16
COMMANDLINE_SIZE = 1024


class PhysdevOp(IntEnum):
    set_iopl = 6
    set_iobitmap = 7


IO_PORTS = 0x10000  # the x86 I/O space: set_iobitmap's nr_ports goes up to it
IOBMP_BYTES = IO_PORTS // 8  # a guest's I/O bitmap (xen/arch/x86/include/asm/processor.h)


class VcpuOp(IntEnum):
    """HYPERVISOR_vcpu_op's commands (public/vcpu.h)."""

    initialise = 0
    up = 1
    down = 2
    is_up = 3
    get_runstate_info = 4
    register_runstate_memory_area = 5
    set_periodic_timer = 6
    stop_periodic_timer = 7
    set_singleshot_timer = 8
    stop_singleshot_timer = 9
    register_vcpu_info = 10
    send_nmi = 11
    get_physid = 12
    register_vcpu_time_memory_area = 13


class RunstateState(IntEnum):
    """vcpu_runstate_info.state (public/vcpu.h, RUNSTATE_*)."""

    running = 0
    runnable = 1
    blocked = 2
    offline = 3


VCPU_SSHOTTMR_FUTURE = 1  # set_singleshot_timer: -ETIME if the deadline has passed
XEN_LEGACY_MAX_VCPUS = 32  # shared_info.vcpu_info[] (public/arch-x86/xen.h)
VGCF_IN_KERNEL = 1 << 2  # vcpu_guest_context.flags (public/arch-x86/xen.h)
VGCF_FAILSAFE_DISABLES_EVENTS = 1 << 3  # the failsafe callback masks events
VGCF_SYSCALL_DISABLES_EVENTS = 1 << 4  # the syscall callback masks events
VGCF_ONLINE = 1 << 5  # VCPUOP_initialise leaves the vCPU up (arch_set_info_guest)


XEN_VERSION = (4, 19)  # what xen_version(XENVER_version) answers: major << 16 | minor
XEN_EXTRAVERSION = b".0-pvtool"


class ElfNote(IntEnum):
    """Types of the notes named "Xen" (public/elfnote.h)."""

    info = 0
    entry = 1
    hypercall_page = 2
    virt_base = 3
    paddr_offset = 4
    xen_version = 5
    guest_os = 6
    guest_version = 7
    loader = 8
    pae_mode = 9
    features = 10
    bsd_symtab = 11
    hv_start_low = 12
    l1_mfn_valid = 13
    suspend_cancel = 14
    init_p2m = 15
    mod_start_pfn = 16
    supported_features = 17
    phys32_entry = 18


XEN_NOTE_NAME = b"Xen"


# Start-info flags and magic strings.
SIF_PRIVILEGED = 1
SIF_INITDOMAIN = 2
START_INFO_MAGIC_32 = b"xen-3.0-x86_32"
START_INFO_MAGIC_32P = b"xen-3.0-x86_32p"
MAX_GUEST_CMDLINE = 1024  # start_info.cmd_line's size, its NUL included (xen.h)


# Flat selectors Xen provides in its reserved GDT page (byte 0xe000, entry 7168).
FIRST_RESERVED_GDT_BYTE = 0xE000
FIRST_RESERVED_GDT_ENTRY = FIRST_RESERVED_GDT_BYTE // 8
FLAT_RING1_CS = 0xE019
FLAT_RING1_DS = 0xE021
FLAT_RING1_SS = 0xE021
FLAT_RING3_CS = 0xE02B
FLAT_RING3_DS = 0xE033
FLAT_RING3_SS = 0xE033
GUEST_KERNEL_RPL = 1  # a 32-bit PV kernel runs in ring 1 (Xen's GUEST_KERNEL_RPL)

# Virtual address space Xen keeps for itself on x86-32.
HYPERVISOR_VIRT_START_PAE = 0xF5800000
HYPERVISOR_VIRT_START_2LEVEL = 0xFC000000  # Xen 3.0's non-PAE x86-32 layout
# PAE (arch-x86/xen-x86_32.h): the read-only machine-to-phys table starts Xen's range,
# whose L2 slots are 428-511 of the L2 under L3 slot 3 (Xen's "PAE Xen L2").
RO_MPT_VIRT_START_PAE = HYPERVISOR_VIRT_START_PAE
PAE_XEN_L3_SLOT = 3
PAE_XEN_FIRST_L2_SLOT = (HYPERVISOR_VIRT_START_PAE >> 21) & 511  # 428
# Flags a 32-bit PV guest's PAE L3 entry may carry: those Xen's l3_disallow_mask
# (COMPAT_L3_DISALLOW_MASK, 0xFFFFF198: xen/arch/x86/mm.c) leaves, since Xen runs the
# guest on 4-level tables: present, RW, US, accessed, dirty and the three software
# bits; PWT, PCD, PS, G and bits 52-63 are refused.
PAE_L3_ALLOWED_FLAGS = 0x001 | 0x002 | 0x004 | 0x020 | 0x040 | 0xE00

# trap_info.flags
TI_DPL_MASK = 3
TI_MASK_EVENTS = 4

# Domain-builder layout: the bootstrap mapping ends on a 4 MiB boundary with at
# least 512 KiB to spare (xg_dom_x86.c).
BOOT_MAPPING_ALIGN = 4 << 20
BOOT_MAPPING_SPARE = 512 << 10

NR_EVENT_CHANNELS_32 = 1024
DOMID_SELF = 0x7FF0


def hypercall_page(entry: Callable[[int], bytes]) -> bytes:
    """A hypercall page: entry(i) at 32 * i for each of the 128 hypercalls, the rest
    of the page int3 (XEN-ABI.md, XEN-ABI64.md 1.2)."""
    page = bytearray(b"\xcc" * (HYPERCALL_ENTRY_SIZE * HYPERCALL_PAGE_ENTRIES))
    for number in range(HYPERCALL_PAGE_ENTRIES):
        code = entry(number)
        page[HYPERCALL_ENTRY_SIZE * number:HYPERCALL_ENTRY_SIZE * number + len(code)] = code
    return bytes(page)


def _hypercall_entry_32(number: int) -> bytes:
    """Entry i is `mov eax, i; int 0x82; ret`, and the iret entry `push eax;
    mov eax, 23; int 0x82` (no ret: guests jump to it)."""
    mov_eax = b"\xb8" + number.to_bytes(4, "little")
    if number == Hypercall.iret:
        return b"\x50" + mov_eax + bytes((0xCD, HYPERCALL_VECTOR_32))
    return mov_eax + bytes((0xCD, HYPERCALL_VECTOR_32, 0xC3))


def hypercall_page_32() -> bytes:
    """The hypercall page as Xen writes it for a 32-bit guest."""
    return hypercall_page(_hypercall_entry_32)
