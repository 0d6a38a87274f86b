"""Byte layouts of the Xen PV structures pvtool reads and writes: x86-32 offsets,
checked against Xen's public headers compiled with gcc -m32, and the structures that
are the same on both widths. The 64-bit layouts are in abi/xen64.py.

A Layout is a name, a size and named fields (offset, struct format). The hypervisor
packs and unpacks guest memory through these, and the patcher's stubs take their
offsets from them, so an offset is written exactly once.
"""

import struct
from dataclasses import dataclass

from pvtool.abi.xen import MAX_GUEST_CMDLINE


@dataclass(frozen=True)
class Field:
    offset: int
    fmt: str  # struct format character(s), little-endian implied

    @property
    def size(self) -> int:
        return struct.calcsize("<" + self.fmt)


@dataclass(frozen=True)
class Layout:
    name: str
    size: int
    fields: dict[str, Field]

    def offset(self, name: str) -> int:
        return self.fields[name].offset

    def unpack(self, data: bytes) -> dict:
        """Every field of one structure from its bytes (a tuple for array fields)."""
        out: dict = {}
        for name, f in self.fields.items():
            values = struct.unpack_from("<" + f.fmt, data, f.offset)
            out[name] = values[0] if len(values) == 1 else values
        return out

    def pack(self, **values: int | bytes) -> bytes:
        """One structure's bytes; fields not named are zero."""
        buf = bytearray(self.size)
        for name, value in values.items():
            f = self.fields[name]
            items = value if isinstance(value, tuple) else (value,)
            struct.pack_into("<" + f.fmt, buf, f.offset, *items)
        return bytes(buf)


def layout(name: str, size: int, **fields: tuple[int, str]) -> Layout:
    """A Layout from (offset, format) pairs."""
    return Layout(name, size, {k: Field(*v) for k, v in fields.items()})


START_INFO = layout(
    "start_info", 1112,
    magic=(0, "32s"), nr_pages=(32, "I"), shared_info=(36, "I"), flags=(40, "I"),
    store_mfn=(44, "I"), store_evtchn=(48, "I"), console_mfn=(52, "I"),
    console_evtchn=(56, "I"), pt_base=(60, "I"), nr_pt_frames=(64, "I"),
    mfn_list=(68, "I"), mod_start=(72, "I"), mod_len=(76, "I"),
    cmd_line=(80, f"{MAX_GUEST_CMDLINE}s"),
)

VCPU_INFO = layout(
    "vcpu_info", 64,
    evtchn_upcall_pending=(0, "B"), evtchn_upcall_mask=(1, "B"),
    evtchn_pending_sel=(4, "I"), cr2=(8, "I"),
    time_version=(32, "I"), tsc_timestamp=(40, "Q"), system_time=(48, "Q"),
    tsc_to_system_mul=(56, "I"), tsc_shift=(60, "b"),
)

SHARED_INFO = layout(
    "shared_info", 2344,
    vcpu_info=(0, "64s"), evtchn_pending=(2048, "128s"), evtchn_mask=(2176, "128s"),
    wc_version=(2304, "I"), wc_sec=(2308, "I"), wc_nsec=(2312, "I"),
)

TRAP_INFO = layout("trap_info", 8, vector=(0, "B"), flags=(1, "B"), cs=(2, "H"),
                    address=(4, "I"))

MMU_UPDATE = layout("mmu_update", 16, ptr=(0, "Q"), val=(8, "Q"))

MMUEXT_OP = layout("mmuext_op", 12, cmd=(0, "I"), arg1=(4, "I"), arg2=(8, "I"))

MULTICALL_ENTRY = layout("multicall_entry", 32, op=(0, "I"), result=(4, "I"),
                          args=(8, "6I"))

SCHED_SHUTDOWN = layout("sched_shutdown", 4, reason=(0, "I"))
# sched_poll: ports (a guest handle: a u32 pointer on x86-32), nr_ports, timeout (ns).
SCHED_POLL = layout("sched_poll", 16, ports=(0, "I"), nr_ports=(4, "I"), timeout=(8, "Q"))

EVTCHN_BIND_VIRQ = layout("evtchn_bind_virq", 12, virq=(0, "I"), vcpu=(4, "I"),
                           port=(8, "I"))
EVTCHN_SEND = layout("evtchn_send", 4, port=(0, "I"))
EVTCHN_CLOSE = layout("evtchn_close", 4, port=(0, "I"))
EVTCHN_UNMASK = layout("evtchn_unmask", 4, port=(0, "I"))
EVTCHN_ALLOC_UNBOUND = layout("evtchn_alloc_unbound", 8, dom=(0, "H"), remote_dom=(2, "H"),
                               port=(4, "I"))
# evtchn_status: {dom, port} in; status, vcpu and a union (interdomain {dom, port},
# virq) out.
EVTCHN_STATUS = layout("evtchn_status", 24, dom=(0, "H"), port=(4, "I"), status=(8, "I"),
                        vcpu=(12, "I"), u0=(16, "I"), u1=(20, "I"))

EVTCHN_BIND_IPI = layout("evtchn_bind_ipi", 8, vcpu=(0, "I"), port=(4, "I"))
EVTCHN_BIND_VCPU = layout("evtchn_bind_vcpu", 8, port=(0, "I"), vcpu=(4, "I"))
EVTCHN_RESET = layout("evtchn_reset", 2, dom=(0, "H"))
EVTCHN_SET_PRIORITY = layout("evtchn_set_priority", 8, port=(0, "I"), priority=(4, "I"))
# The FIFO ABI's arguments, read (for -EFAULT) before a Xen without FIFO refuses them:
# evtchn_init_control {control_gfn, offset, vcpu, link_bits, pad[7]}, evtchn_expand_array.
EVTCHN_INIT_CONTROL = layout("evtchn_init_control", 24, control_gfn=(0, "Q"),
                              offset=(8, "I"), vcpu=(12, "I"), link_bits=(16, "B"))
EVTCHN_EXPAND_ARRAY = layout("evtchn_expand_array", 8, array_gfn=(0, "Q"))

CALLBACK_REGISTER = layout("callback_register", 12, type=(0, "H"), flags=(2, "H"),
                            cs=(4, "I"), eip=(8, "I"))
CALLBACK_UNREGISTER = layout("callback_unregister", 4, type=(0, "H"))

PHYSDEV_SET_IOPL = layout("physdev_set_iopl", 4, iopl=(0, "I"))

# Grant tables v1 (grant_table.h): a shared entry, and the arguments of the commands
# pvtool serves. frame_list is a guest handle (a u32 pointer on x86-32) to u32 frames.
GRANT_ENTRY_V1 = layout("grant_entry_v1", 8, flags=(0, "H"), domid=(2, "H"), frame=(4, "I"))
GNTTAB_SETUP_TABLE = layout("gnttab_setup_table", 16, dom=(0, "H"), nr_frames=(4, "I"),
                            status=(8, "h"), frame_list=(12, "I"))
GNTTAB_QUERY_SIZE = layout("gnttab_query_size", 16, dom=(0, "H"), nr_frames=(4, "I"),
                           max_nr_frames=(8, "I"), status=(12, "h"))
GNTTAB_SET_VERSION = layout("gnttab_set_version", 4, version=(0, "I"))
GNTTAB_GET_VERSION = layout("gnttab_get_version", 8, dom=(0, "H"), version=(4, "I"))
# gnttab_copy: source and dest are {ref or gmfn, domid, offset}.
GNTTAB_COPY = layout("gnttab_copy", 24, source_ref=(0, "I"), source_domid=(4, "H"),
                     source_offset=(6, "H"), dest_ref=(8, "I"), dest_domid=(12, "H"),
                     dest_offset=(14, "H"), len=(16, "H"), flags=(18, "H"),
                     status=(20, "h"))

# memory_op: xen_add_to_physmap, xen_memory_map {nr_entries, buffer handle} and the
# packed E820 entries it fills. Xen's fields named `size` are `count` and `length`
# here (layout() takes the structure's size by that name).
XEN_ADD_TO_PHYSMAP = layout("xen_add_to_physmap", 16, domid=(0, "H"), count=(2, "H"),
                            space=(4, "I"), idx=(8, "I"), gpfn=(12, "I"))
XEN_MEMORY_MAP = layout("xen_memory_map", 8, nr_entries=(0, "I"), buffer=(4, "I"))
E820_ENTRY = layout("e820entry", 20, addr=(0, "Q"), length=(8, "Q"), type=(16, "I"))

# The PV console ring (io/console.h, struct xencons_interface).
XENCONS_INTERFACE = layout(
    "xencons_interface", 3092,
    in_=(0, "1024s"), out=(1024, "2048s"), in_cons=(3072, "I"), in_prod=(3076, "I"),
    out_cons=(3080, "I"), out_prod=(3084, "I"),
)

# struct xenstore_domain_interface (io/xs_wire.h), the same for 32- and 64-bit guests.
XENSTORE_DOMAIN_INTERFACE = layout(
    "xenstore_domain_interface", 2080,
    req=(0, "1024s"), rsp=(1024, "1024s"), req_cons=(2048, "I"), req_prod=(2052, "I"),
    rsp_cons=(2056, "I"), rsp_prod=(2060, "I"), server_features=(2064, "I"),
    connection=(2068, "I"), error=(2072, "I"), evtchn_port=(2076, "I"),
)

# HYPERVISOR_iret's frame on the guest stack, 32-bit: {EAX, EIP, CS, EFLAGS, [ESP, SS]}.
IRET_FRAME_32 = layout("iret_frame", 24, eax=(0, "I"), eip=(4, "I"), cs=(8, "I"),
                        eflags=(12, "I"), esp=(16, "I"), ss=(20, "I"))
