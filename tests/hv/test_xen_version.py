"""xen_version, every subcommand, as Xen's do_xen_version answers it (xen/common/
kernel.c) under the default XSM policy (xsm/dummy.h): the numbers, buffer sizes and
feature bits are typed from public/version.h and public/features.h, not imported.
pvtool's domain is domU 1 (docs/ABI.md, "Domain ids"); dom0, the hardware domain, is
made by renumbering it.
"""

import struct

import pytest

from tests.hv.harness import hypercall
from tests.hv.xenguest import EFAULT, EINVAL, ENOSYS, HC, neg

EPERM, ENODATA, ENOBUFS = 1, 61, 105
(VERSION, EXTRAVERSION, COMPILE_INFO, CAPABILITIES, CHANGESET, PLATFORM_PARAMETERS,
 GET_FEATURES, PAGESIZE, GUEST_HANDLE, COMMANDLINE, BUILD_ID, EXTRAVERSION2,
 CAPABILITIES2, CHANGESET2, COMMANDLINE2) = range(15)
FEAT_PAE_PGDIR_ABOVE_4GB, FEAT_PRESERVE_AD, FEAT_DOM0, FEAT_DIRECT_MAPPED = 4, 5, 11, 17
VMASST_ENABLE, VMASST_PAE_EXTENDED_CR3 = 0, 3
HYPERVISOR_VIRT_START_2LEVEL = 0xFC000000
FILL = 0xA5

SCRATCH = r"""
buf:    .skip 4096
"""


def filled(idle, size: int = 2048) -> int:
    buf = idle.guest["buf"]
    idle.write(buf, bytes([FILL]) * size)
    return buf


def read(idle, address: int, size: int) -> bytes:
    return idle.memory.read_phys(address, size)


@pytest.fixture
def domu(idle):
    """The idle domain as pvtool boots it, a domU: Xen denies it commandline and
    build_id."""
    assert idle.domain.domid == 1
    return idle


@pytest.fixture
def dom0(idle, monkeypatch):
    """The idle domain renumbered 0, the hardware domain."""
    monkeypatch.setattr(idle.domain, "domid", 0)
    return idle


@pytest.mark.parametrize("cmd, size", [(EXTRAVERSION, 16), (CHANGESET, 64),
                                       (CAPABILITIES, 1024), (GUEST_HANDLE, 16)])
def test_a_fixed_size_answer_fills_its_buffer_and_not_a_byte_more(idle, cmd, size):
    buf = filled(idle)
    assert hypercall(idle, HC.xen_version, cmd, buf) == 0
    answer = read(idle, buf, size + 16)
    assert answer[size:] == bytes([FILL]) * 16
    if cmd == GUEST_HANDLE:
        assert answer[:size] == bytes(16)  # no toolstack gave the domain a handle
    else:
        assert answer[size - 1] == 0 and FILL not in answer[:size]  # zero-padded string


def test_capabilities_name_the_32_bit_abis_the_builder_boots(idle):
    buf = filled(idle)
    hypercall(idle, HC.xen_version, CAPABILITIES, buf)
    caps = read(idle, buf, 1024).rstrip(b"\0").split(b" ")
    assert caps == [b"xen-3.0-x86_32", b"xen-3.0-x86_32p"]


def test_compile_info_is_four_nul_terminated_strings_of_64_16_32_32(idle):
    buf = filled(idle)
    assert hypercall(idle, HC.xen_version, COMPILE_INFO, buf) == 0
    info = read(idle, buf, 144 + 4)
    assert info[144:] == bytes([FILL]) * 4
    for start, size in ((0, 64), (64, 16), (80, 32), (112, 32)):
        field = info[start:start + size]
        assert field[-1] == 0 and FILL not in field


def test_changeset_is_xens_unavailable(idle):
    buf = filled(idle)
    hypercall(idle, HC.xen_version, CHANGESET, buf)
    assert read(idle, buf, 12) == b"unavailable\0"


def test_platform_parameters_give_a_32_bit_guest_where_xen_begins(idle):
    buf = filled(idle)
    assert hypercall(idle, HC.xen_version, PLATFORM_PARAMETERS, buf) == 0
    assert read(idle, buf, 8) == struct.pack("<I", HYPERVISOR_VIRT_START_2LEVEL) + b"\xa5" * 4


def features(booted) -> int:
    buf = booted.guest["buf"]
    booted.write(buf, struct.pack("<II", 0, 0xFFFFFFFF))
    assert hypercall(booted, HC.xen_version, GET_FEATURES, buf) == 0
    index, submap = struct.unpack("<II", read(booted, buf, 8))
    assert index == 0
    return submap


def test_get_features_submap_0_for_dom0_and_a_domu(domu, monkeypatch):
    assert features(domu) == 1 << FEAT_PRESERVE_AD | 1 << FEAT_DIRECT_MAPPED
    monkeypatch.setattr(domu.domain, "domid", 0)
    assert features(domu) == 1 << FEAT_PRESERVE_AD | 1 << FEAT_DIRECT_MAPPED | 1 << FEAT_DOM0


def test_get_features_shows_pae_pgdir_above_4gb_once_its_assist_is_on(idle):
    assert not features(idle) >> FEAT_PAE_PGDIR_ABOVE_4GB & 1
    assert hypercall(idle, HC.vm_assist, VMASST_ENABLE, VMASST_PAE_EXTENDED_CR3) == 0
    assert features(idle) >> FEAT_PAE_PGDIR_ABOVE_4GB & 1


@pytest.mark.parametrize("index", [1, 2, 0xFFFFFFFF])
def test_get_features_of_another_submap_is_einval_and_writes_nothing(idle, index):
    buf = filled(idle)
    idle.write(buf, struct.pack("<I", index))
    assert hypercall(idle, HC.xen_version, GET_FEATURES, buf) == neg(EINVAL)
    assert read(idle, buf + 4, 4) == bytes([FILL]) * 4


def test_pagesize_takes_a_null_handle_only(idle):
    assert hypercall(idle, HC.xen_version, PAGESIZE, 0) == 4096
    assert hypercall(idle, HC.xen_version, PAGESIZE, idle.guest["buf"]) == neg(EINVAL)


def test_commandline_is_1024_bytes_for_dom0_and_one_nul_for_a_domu(domu, monkeypatch):
    buf = filled(domu)
    assert hypercall(domu, HC.xen_version, COMMANDLINE, buf) == 0
    assert read(domu, buf, 2) == b"\0" + bytes([FILL])  # xen_deny(): "" in a release
    buf = filled(domu)
    monkeypatch.setattr(domu.domain, "domid", 0)
    assert hypercall(domu, HC.xen_version, COMMANDLINE, buf) == 0
    assert read(domu, buf, 1025) == bytes(1024) + bytes([FILL])  # an empty command line


@pytest.mark.parametrize("cmd", [BUILD_ID, COMMANDLINE2])
def test_build_id_and_commandline2_are_eperm_for_a_domu(domu, cmd):
    buf = filled(domu)
    assert hypercall(domu, HC.xen_version, cmd, buf) == neg(EPERM)
    assert hypercall(domu, HC.xen_version, cmd, 0) == neg(EPERM)


def test_build_id_for_dom0_is_enodata_without_one(dom0):
    assert hypercall(dom0, HC.xen_version, BUILD_ID, 0) == neg(ENODATA)


@pytest.mark.parametrize("cmd, text", [(EXTRAVERSION2, None), (CAPABILITIES2,
                                       b"xen-3.0-x86_32 xen-3.0-x86_32p"),
                                       (CHANGESET2, b"unavailable")])
def test_a_varbuf_subcommand_gives_its_length_then_its_text_without_nul(domu, cmd, text):
    buf = filled(domu)
    length = hypercall(domu, HC.xen_version, cmd, 0)  # a null handle: the length
    domu.write(buf, struct.pack("<I", length))
    assert hypercall(domu, HC.xen_version, cmd, buf) == length
    answer = read(domu, buf + 4, length + 1)
    assert answer[length] == FILL
    if text is not None:
        assert answer[:length] == text
    else:  # the extraversion, as XENVER_extraversion gives it NUL-terminated
        hypercall(domu, HC.xen_version, EXTRAVERSION, buf + 64)
        assert read(domu, buf + 64, length + 1) == answer[:length] + b"\0"


def test_a_varbuf_too_small_is_enobufs_and_writes_nothing(idle):
    buf = filled(idle)
    idle.write(buf, struct.pack("<I", 3))
    assert hypercall(idle, HC.xen_version, CAPABILITIES2, buf) == neg(ENOBUFS)
    assert read(idle, buf + 4, 4) == bytes([FILL]) * 4


def test_commandline2_for_dom0_is_its_empty_length(dom0):
    assert hypercall(dom0, HC.xen_version, COMMANDLINE2, 0) == 0


@pytest.mark.parametrize("cmd", [EXTRAVERSION, COMPILE_INFO, CAPABILITIES, CHANGESET,
                                 PLATFORM_PARAMETERS, GET_FEATURES, GUEST_HANDLE,
                                 COMMANDLINE])
def test_every_buffer_answer_into_unmapped_memory_is_efault(idle, cmd):
    assert hypercall(idle, HC.xen_version, cmd, 0x40000000) == neg(EFAULT)


@pytest.mark.parametrize("cmd", [15, 16, 0x999, 0xFFFFFFFF])
def test_subcommands_beyond_version_h_are_enosys(idle, cmd):
    assert hypercall(idle, HC.xen_version, cmd, idle.guest["buf"]) == neg(ENOSYS)
