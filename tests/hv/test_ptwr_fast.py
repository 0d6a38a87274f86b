"""The ptwr fast path (hv/ptwr.py, Validator._update_l1e), on both widths: what it
refuses, the decode it caches and never reuses over rewritten code, and counts after
many stores equal to those the journaled path and mmu_update leave.

A store is made as the #PF handler receives it: the vCPU on the store instruction,
its registers set, the fault's address and error code handed to handle_write_fault.
"""

import random
from dataclasses import dataclass

import pytest

from pvtool.hv.errors import DomainCrash
from pvtool.hv.frames import PageType, page_type, type_count
from pvtool.hv.hypercalls import call
from pvtool.hv.ptwr import handle_write_fault
from pvtool.machine.cpu import EAX, EBX, ECX, EIP, GPRS64_BY_NAME, RIP
from tests.hv import xenguest64
from tests.hv.harness import boot
from tests.hv.xenguest import DOMID_SELF, HC

PF_P, PF_W = 1, 2
PAGE = 4096
P_RW, PCD = 0x03, 0x10
SCRATCH_FRAMES = 6

# The stores each test makes, of a width's entry size (HALF: half an entry).
STORES = """
store:
    mov {size} ptr [{base}], {source}
store_word:
    mov word ptr [{base}], ax
store_across:
    mov {size} ptr [{base} + {half}], {source}
store_add:
    add {size} ptr [{base}], {source}
"""
STORES32 = STORES.format(size="dword", base="ebx", source="eax", half=2)
STORES64 = STORES.format(size="qword", base="rbx", source="rax", half=4)
# `mov [ebx], ecx` / `mov [rbx], rcx`: what a test rewrites the store at `store` into,
# the same length as the original.
STORE_FROM_ECX = {32: bytes.fromhex("890b"), 64: bytes.fromhex("48890b")}
BSS = f"frames: .skip {PAGE} * {SCRATCH_FRAMES}\nbuf: .skip {PAGE}"


@dataclass
class Width:
    """One width's guest and how its entries look."""

    bits: int
    entry: int  # bytes
    ip: int
    source: int  # the store's source register (EAX / RAX)
    base: int  # the store's address register (EBX / RBX)
    other: int  # ECX / RCX
    kernel_flags: int  # what the validator adds to a kernel's L1 entry (adjust)
    virt_base: int


WIDTHS = {
    32: Width(32, 4, EIP, EAX, EBX, ECX, 0, 0),
    64: Width(64, 8, RIP, GPRS64_BY_NAME["rax"], GPRS64_BY_NAME["rbx"],
              GPRS64_BY_NAME["rcx"], xenguest64.US | xenguest64.GUEST_KERNEL,
              xenguest64.VIRT_BASE),
}


@pytest.fixture(scope="module")
def guests(build, build64):
    return {32: build("", handlers=STORES32, bss=BSS),
            64: build64(handlers=STORES64, bss=BSS)}


@pytest.fixture(params=[32, 64])
def world(request, guests):
    return World(guests[request.param], WIDTHS[request.param])


class World:
    """A booted domain of one width, its scratch frames mapped by one L1 in use."""

    def __init__(self, guest, width: Width):
        self.width = width
        self.dom = boot(guest, ram=xenguest64.RAM) if width.bits == 64 else boot(guest)
        self.domain = self.dom.domain
        self.frames = self.domain.frames
        self.tables = self.domain.pagetables
        memory, first = self.domain.memory, guest["frames"]
        self._l1e = [memory.walk(first + i * PAGE).pte_addr for i in range(SCRATCH_FRAMES)]

    def frame(self, index: int) -> int:
        return self.dom.addr("frames") + index * PAGE

    def l1e(self, index: int) -> int:
        """The machine address of the L1 entry that mapped scratch frame INDEX at boot."""
        return self._l1e[index]

    def entry(self, address: int) -> int:
        return int.from_bytes(self.domain.memory.read_phys(address, self.width.entry), "little")

    def store(self, label: str, address: int, value: int, at: int | None = None) -> bool:
        """The kernel's store at LABEL of VALUE (EAX/RAX) to machine ADDRESS (EBX/RBX
        holds its virtual address), faulting at AT (default: ADDRESS)."""
        cpu, width = self.dom.cpu, self.width
        cpu.write(width.ip, self.dom.guest[label])
        cpu.write(width.base, address + width.virt_base)
        cpu.write(width.source, value)
        fault = (address if at is None else at) + width.virt_base
        return handle_write_fault(self.domain, fault, PF_P | PF_W)

    def counts(self) -> list[tuple]:
        """Every frame's references, type word and writable mappings."""
        return [(self.frames.refs(mfn), self.frames.type_info(mfn),
                 sorted(self.frames.writable_at(mfn)))
                for mfn in range(self.domain.nr_pages)]


def test_a_store_is_validated_written_counted_and_stepped_over(world):
    address, target = world.l1e(0), world.frame(1) >> 12
    refs, types = world.frames.refs(target), type_count(world.frames.type_info(target))
    assert world.store("store", address, world.frame(1) | 0x63)
    assert world.entry(address) == world.frame(1) | 0x63 | world.width.kernel_flags
    assert world.dom.cpu.read(world.width.ip) == world.dom.guest["store_word"]
    assert world.frames.refs(target) == refs + 1
    assert type_count(world.frames.type_info(target)) == types + 1
    assert address in world.frames.writable_at(target)


def test_a_store_of_the_flags_alone_keeps_every_count(world):
    """Xen's fast path (mod_l1_entry, !l1e_has_changed): the same frame, P and RW."""
    address = world.l1e(0)
    world.store("store", address, world.frame(0) | 0x63)
    before = world.counts()
    assert world.store("store", address, world.frame(0) | P_RW)
    assert world.entry(address) == world.frame(0) | P_RW | world.width.kernel_flags
    assert world.counts() == before


def test_a_writable_mapping_of_a_page_table_is_never_installed(world):
    """A 2-level kernel's store gets it read-only (docs/ABI.md); a 64-bit one's is
    refused, as on Xen, and the domain crashes with the entry as it was."""
    address, before = world.l1e(0), world.entry(world.l1e(0))
    l1 = address & ~(PAGE - 1)
    if world.width.bits == 64:
        with pytest.raises(DomainCrash, match="invalid page-table entry"):
            world.store("store", address, l1 | 0x63)
        assert world.entry(address) == before
        return
    assert world.store("store", address, l1 | 0x63)
    assert world.entry(address) == l1 | 0x61
    assert world.tables.downgraded[address] == l1 | 0x61
    assert page_type(world.frames.type_info(l1 >> 12)) == PageType.L1


def test_a_frame_not_the_domains_is_refused(world):
    address, before = world.l1e(0), world.entry(world.l1e(0))
    counts = world.counts()
    outside = world.domain.nr_pages * PAGE + 16 * PAGE
    with pytest.raises(DomainCrash, match="not the domain's"):
        world.store("store", address, outside | 0x63)
    assert world.entry(address) == before
    assert world.counts() == counts


def test_reserved_bits_are_refused_on_64_bit(guests):
    """PCD is a bit a 64-bit PV guest may not set in an L1 entry (Xen's
    L1_DISALLOW_MASK); a 2-level entry has no reserved bit."""
    world = World(guests[64], WIDTHS[64])
    address, before = world.l1e(0), world.entry(world.l1e(0))
    with pytest.raises(DomainCrash, match="which a guest may not set"):
        world.store("store", address, world.frame(1) | 0x63 | PCD)
    assert world.entry(address) == before


def test_a_store_across_two_entries_is_refused(world):
    address, before = world.l1e(0), world.entry(world.l1e(0))
    with pytest.raises(DomainCrash, match="across two page-table entries"):
        world.store("store_across", address, 0, at=address + world.width.entry // 2)
    assert world.entry(address) == before


def test_a_store_the_decoder_does_not_accept_is_refused(world):
    address, before = world.l1e(0), world.entry(world.l1e(0))
    with pytest.raises(DomainCrash, match="cannot emulate a write into a page table: add"):
        world.store("store_add", address, 1)
    assert world.entry(address) == before


def test_a_word_store_merges_into_the_entry(world):
    address = world.l1e(0)
    world.store("store", address, world.frame(0) | 0x63)
    assert world.store("store_word", address, (world.frame(0) | 0x61) & 0xFFFF)
    assert world.entry(address) == world.frame(0) | 0x61 | world.width.kernel_flags


def test_code_rewritten_under_a_cached_decode_is_decoded_again(world):
    """The store at `store` is decoded and cached; the kernel rewrites it into a store
    from the other register, of the same length; the next fault there stores that
    register's value, and a rewrite into an `add` is refused."""
    dom, address = world.dom, world.l1e(0)
    world.store("store", address, world.frame(1) | 0x63)
    site = dom.addr("store")
    dom.memory.write_phys(site, STORE_FROM_ECX[world.width.bits])
    dom.cpu.write(world.width.other, world.frame(2) | 0x63)
    assert world.store("store", address, world.frame(1) | 0x63)
    assert world.entry(address) == world.frame(2) | 0x63 | world.width.kernel_flags
    rewrite = STORE_FROM_ECX[world.width.bits]
    dom.memory.write_phys(site, dom.memory.read_phys(dom.addr("store_add"), len(rewrite)))
    with pytest.raises(DomainCrash, match="cannot emulate a write into a page table: add"):
        world.store("store", address, world.frame(3) | 0x63)
    assert world.entry(address) == world.frame(2) | 0x63 | world.width.kernel_flags


def test_a_store_in_a_pages_last_bytes_before_an_unmapped_page_is_emulated(world):
    """The decoder reads at most to the end of the store's page when the next one is
    not mapped: the store is copied into scratch frame 3's last bytes, frame 4 is
    unmapped, and the store from there is emulated like any other."""
    dom, width = world.dom, world.width
    code = STORE_FROM_ECX[width.bits][:-1] + b"\x03"  # mov [ebx], eax / mov [rbx], rax
    site = world.frame(4) - len(code)
    dom.memory.write_phys(site, code)
    world.store("store", world.l1e(4), 0)
    dom.cpu.write(width.ip, site + width.virt_base)
    dom.cpu.write(width.base, world.l1e(0) + width.virt_base)
    dom.cpu.write(width.source, world.frame(1) | 0x63)
    assert handle_write_fault(world.domain, world.l1e(0) + width.virt_base, PF_P | PF_W)
    assert world.entry(world.l1e(0)) == world.frame(1) | 0x63 | width.kernel_flags
    assert dom.cpu.read(width.ip) == world.frame(4) + width.virt_base


# -- counts: the fast path against the journaled path and mmu_update --------------------
def random_values(world: World, seed: int, count: int) -> list[tuple[int, int]]:
    """COUNT (scratch entry, value) pairs: frames mapped writable, read-only, with
    their accessed and dirty bits changed alone, or not at all."""
    rng = random.Random(seed)
    flags = (0x63, 0x61, 0x23, 0x03, 0x01, 0)
    return [(rng.randrange(3), world.frame(rng.randrange(SCRATCH_FRAMES))
             | rng.choice(flags)) for _ in range(count)]


def by_store(world: World, entry: int, value: int) -> None:
    assert world.store("store", world.l1e(entry), value)


def by_journaled_update(world: World, entry: int, value: int) -> None:
    """Validator.update_entry inside a transaction: the general, journaled path."""
    address = world.l1e(entry)
    with world.frames.transaction():
        world.tables.validator.update_entry(address >> 12, (address & 0xFFF) // world.width.entry,
                                            value, downgrade=False)


def by_mmu_update(world: World, entry: int, value: int) -> None:
    request = world.l1e(entry).to_bytes(8, "little") + value.to_bytes(8, "little")
    world.dom.memory.write_phys(world.dom.addr("buf"), request)
    domain = world.domain
    result = call(domain, domain.vcpu, HC.mmu_update,
                  (world.dom.guest["buf"], 1, 0, DOMID_SELF, 0))
    assert result == 0


def test_counts_after_many_stores_equal_the_other_paths(guests):
    for bits in (32, 64):
        worlds = [World(guests[bits], WIDTHS[bits]) for _ in range(3)]
        values = random_values(worlds[0], seed=bits, count=300)
        for world, apply in zip(worlds, (by_store, by_journaled_update, by_mmu_update),
                                strict=True):
            for entry, value in values:
                apply(world, entry, value)
        fast, journaled, hypercall = (w.counts() for w in worlds)
        assert fast == journaled == hypercall, f"{bits}-bit"
        entries = [[w.entry(w.l1e(i)) for i in range(3)] for w in worlds]
        assert entries[0] == entries[1] == entries[2], f"{bits}-bit"


def test_liveness_is_reachability_from_a_base_or_pin(world):
    """Validator.is_live, which decides whether a kernel's store is emulated (its walk
    up tables linked once, and its search of tables linked several times), answers as
    the definition does: a table is live exactly when a chain of tables linking it
    reaches a base or a pin. Random links among frames of four levels (each linked
    only from the level above, as tables are), random roots, checked against a plain
    search."""
    rng = random.Random(17)
    validator, frames = world.tables.validator, world.frames
    first = world.domain.nr_pages + 0x100  # frames no table of the domain's uses
    levels = [[first + 16 * level + i for i in range(8)] for level in range(4)]
    for lower, upper in zip(levels, levels[1:], strict=False):
        for mfn in lower:
            for holder in rng.sample(upper, rng.choice((0, 1, 1, 2))):
                frames.link(mfn, holder)
    every = [mfn for level in levels for mfn in level]
    for mfn in [*rng.sample(levels[3], 3), rng.choice(levels[1])]:  # bases, a pin
        frames.count_up(validator.roots, mfn)

    def reaches_a_root(mfn: int) -> bool:
        seen, todo = set(), [mfn]
        while todo:
            table = todo.pop()
            if table in validator.roots:
                return True
            seen.add(table)
            todo += [holder for holder in frames.holders(table) if holder not in seen]
        return False

    answers = [validator.is_live(mfn) for mfn in every]
    assert answers == [reaches_a_root(mfn) for mfn in every]
    assert False in answers
    # live through a chain, with no holder a root
    assert any(live and not set(frames.holders(mfn)) & set(validator.roots)
               and mfn not in validator.roots for mfn, live in zip(every, answers, strict=True))
