"""machine/cpu_state.py and the in-place register access built on it (Cpu.reader,
Cpu.writer): every value read or written in place is what Unicorn's own API reads and
writes, between runs and inside a hook, in both widths."""

import pytest
from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_64, Uc
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import HOOK_INTR_CFUNC

from pvtool.interrupts import emulate
from pvtool.machine import cpu as C
from pvtool.machine import cpu_state
from pvtool.machine.context import EmulatorLayoutError
from pvtool.machine.cpu import Cpu
from tests.machine.test_cpu import CODE, bare_cpu

GPRS = (C.EAX, C.EBX, C.ECX, C.EDX, C.ESI, C.EDI, C.EBP, C.ESP)
GPRS64 = tuple(C.GPRS64_BY_NAME.values())


def test_finding_the_state_leaves_every_register_as_it_was():
    cpu = bare_cpu()
    values = [0x1111_1111 * (i + 1) for i in range(len(GPRS))]
    for reg, value in zip(GPRS, values, strict=True):
        cpu.uc.reg_write(reg, value)
    cpu_state.find_cpu_state(cpu.uc)
    assert [cpu.uc.reg_read(reg) for reg in GPRS] == values


def test_a_state_that_is_not_the_context_blob_is_refused(monkeypatch):
    monkeypatch.setattr(cpu_state, "_matches_blob", lambda uc, address: False)
    with pytest.raises(EmulatorLayoutError, match="unicorn==2.1.4"):
        cpu_state.find_cpu_state(bare_cpu().uc)


def test_the_reader_gives_the_registers_in_the_order_asked():
    cpu = bare_cpu()
    for i, reg in enumerate(GPRS):
        cpu.uc.reg_write(reg, 0xA000_0000 + i)
    assert cpu.reader((C.EDI, C.CS, C.EAX))() == (0xA000_0005, 0x08, 0xA000_0000)
    assert cpu.reader((C.EAX,))() == (0xA000_0000,)
    assert cpu.reader((C.SS, C.DS))() == (0x10, 0x10)


def test_registers_unicorn_must_load_have_no_reader_or_writer():
    cpu = bare_cpu()
    with pytest.raises(KeyError):
        cpu.reader((C.EAX, C.EFLAGS))  # computed from QEMU's lazy flags
    with pytest.raises(KeyError):
        cpu.writer(C.EIP)  # Unicorn must leave the translated block
    with pytest.raises(ValueError, match="through Unicorn"):
        cpu.writer(C.CS)
    with pytest.raises(ValueError, match="twice"):
        cpu.reader((C.EAX, C.EAX))


def test_a_write_in_place_is_what_unicorn_reads_masked_to_the_width():
    cpu = bare_cpu()
    for reg in GPRS:
        cpu.writer(reg)(-38)  # a hypercall's -ENOSYS
        assert cpu.uc.reg_read(reg) == 0xFFFF_FFDA
        cpu.writer(reg)(0x1_2345_6789)
        assert cpu.uc.reg_read(reg) == 0x2345_6789


def test_a_64_bit_cpu_reads_and_writes_all_64_bits_of_its_registers():
    cpu = Cpu(Uc(UC_ARCH_X86, UC_MODE_64), bits=64)
    for i, reg in enumerate(GPRS64):
        cpu.writer(reg)(0xFFFF_8000_0000_0000 + i)
    assert [cpu.uc.reg_read(reg) for reg in GPRS64] == \
        [0xFFFF_8000_0000_0000 + i for i in range(len(GPRS64))]
    cpu.uc.reg_write(X.UC_X86_REG_R10, 0x1234_5678_9ABC_DEF0)
    assert cpu.reader((X.UC_X86_REG_R10, X.UC_X86_REG_RAX))() == \
        (0x1234_5678_9ABC_DEF0, 0xFFFF_8000_0000_0000)


def test_inside_a_hook_the_state_in_place_is_the_live_cpu():
    # int 0x80 then `mov ebx, eax; mov ecx, edx`: the hook reads EDX as the code
    # left it and writes EAX, which the code after the hook sees.
    cpu = bare_cpu()
    cpu.uc.mem_write(CODE, bytes.fromhex("ba78563412" "cd80" "89c3" "89d1"))
    read, write = cpu.reader((C.EDX, C.CS)), cpu.writer(C.EAX)
    seen = []

    def on_interrupt(handle, vector, _):
        seen.append(read())
        write(0xCAFE_F00D)

    callback = HOOK_INTR_CFUNC(on_interrupt)
    cpu.uc._Uc__do_hook_add(UC_HOOK_INTR, callback, 1, 0)
    emulate(cpu.uc, CODE, CODE + 11)
    assert seen == [(0x1234_5678, 0x08)]
    assert (cpu.read(C.EBX), cpu.read(C.ECX)) == (0xCAFE_F00D, 0x1234_5678)


def test_finding_the_state_of_a_64_bit_cpu_keeps_all_64_bits_of_its_registers():
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.reg_write(X.UC_X86_REG_RAX, 0xFFFF_8000_1234_5678)
    uc.reg_write(X.UC_X86_REG_RDI, 0x0000_7FFF_0000_0001)
    cpu_state.find_cpu_state(uc)
    assert uc.reg_read(X.UC_X86_REG_RAX) == 0xFFFF_8000_1234_5678
    assert uc.reg_read(X.UC_X86_REG_RDI) == 0x0000_7FFF_0000_0001


def test_cpu_read_and_write_in_place_are_unicorns_reads_and_writes():
    """Cpu.read and Cpu.write use the state in place for the registers they can
    (general-purpose, EIP read, selectors read) and Unicorn for the rest."""
    cpu = bare_cpu()
    for i, reg in enumerate(GPRS):
        cpu.write(reg, 0x1_5000_0000 + i)
        assert cpu.uc.reg_read(reg) == 0x5000_0000 + i
    cpu.uc.reg_write(C.EIP, 0x4321)
    assert (cpu.read(C.EIP), cpu.ip, cpu.read(C.CS), cpu.read(C.SS)) == (0x4321, 0x4321, 8, 0x10)
    cpu.write(C.EIP, 0x2468)  # through Unicorn
    assert (cpu.uc.reg_read(C.EIP), cpu.ip) == (0x2468, 0x2468)


def test_inside_a_hook_ip_in_place_is_what_unicorn_reads():
    """`int n` arrives with EIP after it, a fault with EIP on it (UNICORN.md): the
    in-place EIP agrees with Unicorn's in both cases, and says which raised it."""
    cpu = bare_cpu()
    # int 0x80; mov $0x1234, %ax; mov %ax, %ds (#GP(0x1234): past the GDT limit)
    cpu.uc.mem_write(CODE, bytes.fromhex("cd80" "66b83412" "8ed8" "90"))
    seen = []

    def on_interrupt(handle, vector, _):
        seen.append((vector, cpu.ip, cpu.uc.reg_read(C.EIP), cpu.raised_by_instruction))
        if vector == 13:
            cpu.ack_exception()
            cpu.write(C.EIP, cpu.ip + 2)

    callback = HOOK_INTR_CFUNC(on_interrupt)
    cpu.uc._Uc__do_hook_add(UC_HOOK_INTR, callback, 1, 0)
    emulate(cpu.uc, CODE, CODE + 9)
    assert seen == [(0x80, CODE + 2, CODE + 2, True), (13, CODE + 6, CODE + 6, False)]


def test_a_64_bit_cpu_reads_rip_in_place():
    cpu = Cpu(Uc(UC_ARCH_X86, UC_MODE_64), bits=64)
    cpu.uc.reg_write(X.UC_X86_REG_RIP, 0xFFFF_8000_0010_0000)
    assert (cpu.ip, cpu.read(C.RIP)) == (0xFFFF_8000_0010_0000, 0xFFFF_8000_0010_0000)


def test_inside_a_page_fault_hook_cr2_in_place_is_what_unicorn_reads():
    """#PF leaves the faulting address in CR2 (UNICORN.md): read in place, it is
    Unicorn's; so is a CR2 written through Unicorn between runs."""
    cpu = bare_cpu()
    directory, table = 0x10000, 0x11000
    cpu.uc.mem_write(directory, (table | 3).to_bytes(4, "little"))
    for page in range(0x100):  # the first MiB mapped, but 0x5000 not present
        entry = 0 if page == 5 else page << 12 | 3
        cpu.uc.mem_write(table + 4 * page, entry.to_bytes(4, "little"))
    cpu.uc.reg_write(X.UC_X86_REG_CR3, directory)
    cpu.uc.reg_write(X.UC_X86_REG_CR0, 0x8000_0011)
    cpu.uc.mem_write(CODE, bytes.fromhex("a134560000" "90"))  # mov 0x5634, %eax
    seen = []

    def on_interrupt(handle, vector, _):
        seen.append((vector, cpu.read(C.CR2), cpu.uc.reg_read(C.CR2)))
        cpu.ack_exception()
        cpu.write(C.EIP, CODE + 5)

    callback = HOOK_INTR_CFUNC(on_interrupt)
    cpu.uc._Uc__do_hook_add(UC_HOOK_INTR, callback, 1, 0)
    emulate(cpu.uc, CODE, CODE + 6)
    assert seen == [(14, 0x5634, 0x5634)]
    cpu.write(C.CR2, 0xC000_1000)
    assert cpu.read(C.CR2) == 0xC000_1000


CONTROL = (C.CR0, C.CR2, C.CR3, C.CR4)


def control_registers(cpu: Cpu) -> tuple[list[int], list[int]]:
    """CR0, CR2, CR3 and CR4 read in place, and as Unicorn reads them."""
    return [cpu.read(reg) for reg in CONTROL], [cpu.uc.reg_read(reg) for reg in CONTROL]


@pytest.mark.parametrize(("cr0", "cr4"), [
    (0x0000_0010, 0), (0x0000_0011, 0), (0x8000_0011, 0x10), (0x8001_0031, 0x20),
], ids=["real", "protected", "2-level paging", "pae"])
def test_control_registers_in_place_are_unicorns_in_every_32_bit_mode(cr0, cr4):
    cpu = bare_cpu()
    cpu.uc.mem_write(0x10000, (0x11000 | 1).to_bytes(8, "little") * 4)  # a PDPT
    cpu.uc.reg_write(C.CR3, 0x10000)
    cpu.uc.reg_write(C.CR4, cr4)
    cpu.uc.reg_write(C.CR0, cr0)
    cpu.uc.reg_write(C.CR2, 0xDEAD_B000)
    in_place, unicorns = control_registers(cpu)
    assert in_place == unicorns == [cr0, 0xDEAD_B000, 0x10000, cr4]


def test_a_64_bit_cpu_in_long_mode_reads_its_control_registers_in_place():
    cpu = Cpu(Uc(UC_ARCH_X86, UC_MODE_64), bits=64)
    cpu.uc.reg_write(C.CR3, 0x1_2345_6000)  # past 4 GiB: all 64 bits
    cpu.uc.reg_write(C.CR2, 0xFFFF_8000_0000_1234)
    in_place, unicorns = control_registers(cpu)
    assert in_place == unicorns
    assert in_place[1:3] == [0xFFFF_8000_0000_1234, 0x1_2345_6000] and cpu.long_mode


def test_inside_a_hook_control_registers_in_place_are_what_the_guest_loaded():
    """The guest's own `mov cr3`, `mov cr4` and `mov cr0` (int 0x80 after each): the
    hook reads in place what Unicorn reads."""
    cpu = bare_cpu()
    cpu.uc.mem_write(CODE, bytes.fromhex(
        "b800300100" "0f22d8" "cd80"  # mov eax, 0x13000; mov cr3, eax; int 0x80
        "b810000000" "0f22e0" "cd80"  # mov eax, 0x10 (PSE); mov cr4, eax; int 0x80
        "0f20c0" "83c808" "0f22c0" "cd80"))  # cr0 |= TS; int 0x80
    seen = []

    def on_interrupt(handle, vector, _):
        seen.append(control_registers(cpu))

    callback = HOOK_INTR_CFUNC(on_interrupt)
    cpu.uc._Uc__do_hook_add(UC_HOOK_INTR, callback, 1, 0)
    cr4 = cpu.uc.reg_read(C.CR4)  # Unicorn's reset value
    emulate(cpu.uc, CODE, CODE + 31)
    assert [in_place for in_place, _ in seen] == [unicorns for _, unicorns in seen]
    assert [(in_place[2], in_place[3], in_place[0] & 8) for in_place, _ in seen] == \
        [(0x13000, cr4, 0), (0x13000, 0x10, 0), (0x13000, 0x10, 8)]


@pytest.fixture
def fresh_control_check():
    cpu_state.control_registers_found.cache_clear()
    yield
    cpu_state.control_registers_found.cache_clear()


def test_control_registers_not_where_expected_are_refused(monkeypatch, fresh_control_check):
    assert cpu_state.control_registers_found()
    cpu_state.control_registers_found.cache_clear()
    offset, code = cpu_state.READABLE[C.CR3]
    monkeypatch.setitem(cpu_state.READABLE, C.CR3, (offset + 8, code))  # CR4's slot
    assert not cpu_state.control_registers_found()
    with pytest.raises(EmulatorLayoutError, match="unicorn==2.1.4"):
        cpu_state.find_cpu_state(bare_cpu().uc)
