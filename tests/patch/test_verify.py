"""verify() refuses a patched image that is not what the plans say: a byte changed
outside every site, a detour's jump or its stub's return redirected, a privileged
instruction put back where a site was, a site no plan handled. Each tampered image is
written and read back as the pipeline does, then handed to verify()."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from pvtool.errors import PatchError
from pvtool.image.elf import ElfImage, load_elf
from pvtool.image.writer import build_patched_elf
from pvtool.patch.discover import CodeMap
from pvtool.patch.emit import Emitted, added_sections, emit, lay_out, notes
from pvtool.patch.patchset import load_patch_set
from pvtool.patch.pipeline import discover_code
from pvtool.patch.plan import Placement, Plan, plan_sites
from pvtool.patch.sites import find_sites
from pvtool.patch.verify import verify
from tests.patch.tools import build_kernel

KERNEL = """
.globl _start
.type _start, @function
_start:
    mov esp, 0x90000
site_detour:
    cli
    add eax, 0x12345678
site_in_place:
    wbinvd
    add eax, 0x12345678
trap_loop:
site_trap:
    sti
again:
    inc eax
    jz trap_loop
    jnz again
site_kept:
    out dx, al
plain:
    add ebx, 0x55555555
    ret
"""


@dataclass
class Pieces:
    image: ElfImage
    code: CodeMap
    plans: list[Plan]
    emitted: Emitted
    symbols: dict[str, int]
    workdir: Path

    def plan(self, placement: Placement) -> Plan:
        return next(p for p in self.plans if p.placement is placement)

    def build(self, plans: list[Plan] | None = None) -> bytes:
        """The patched image's bytes, as the pipeline's writer lays them out."""
        patch_set = load_patch_set("xen32")
        layout, symbols = lay_out(self.image, patch_set)
        emitted = self.emitted if plans is None else emit(self.image, layout, plans, symbols)
        return build_patched_elf(self.image, patches=emitted.patches,
                                 added=added_sections(emitted),
                                 notes=notes(self.image, emitted, patch_set))

    def load(self, blob: bytes, name: str = "tampered.elf") -> ElfImage:
        path = self.workdir / name
        path.write_bytes(blob)
        return load_elf(path)

    def tampered(self, address: int, new: bytes) -> ElfImage:
        """The patched image with NEW written at virtual ADDRESS."""
        blob = bytearray(self.build())
        patched = self.load(bytes(blob), "clean.elf")
        offset = patched.file_offset(address)
        assert offset is not None
        blob[offset:offset + len(new)] = new
        return self.load(bytes(blob))

    def verify(self, patched: ElfImage, plans: list[Plan] | None = None,
               emitted: Emitted | None = None) -> list[str]:
        return verify(self.image, patched, self.code, self.plans if plans is None else plans,
                      emitted or self.emitted)


def rel32(target: int, after: int) -> bytes:
    """A jmp's rel32 from the instruction that ends at AFTER to TARGET: the CPU adds it
    modulo 2**32, and the glue window (0xFC800000 up) is more than 2 GiB from a kernel
    linked at 1 MiB, so a jump between them wraps around the address space."""
    return ((target - after) % (1 << 32)).to_bytes(4, "little")


@pytest.fixture(scope="module")
def pieces(tmp_path_factory) -> Pieces:
    workdir = tmp_path_factory.mktemp("verify")
    elf, symbols = build_kernel(workdir, KERNEL)
    image = load_elf(elf)
    patch_set = load_patch_set("xen32")
    code = discover_code(image)
    layout, names = lay_out(image, patch_set)
    plans = plan_sites(find_sites(code, patch_set), code, names)
    emitted = emit(image, layout, plans, names)
    return Pieces(image, code, plans, emitted, symbols, workdir)


def test_the_kernel_has_one_site_of_each_placement(pieces):
    where = {p.placement: p.start for p in pieces.plans}
    s = pieces.symbols
    assert where == {Placement.DETOUR: s["site_detour"], Placement.IN_PLACE: s["site_in_place"],
                     Placement.TRAP: s["site_trap"], Placement.KEPT: s["site_kept"]}


def test_an_untouched_patched_image_passes(pieces):
    checks = pieces.verify(pieces.load(pieces.build()))
    assert len(checks) == 3


def test_a_byte_changed_outside_every_site_is_refused(pieces):
    at = pieces.symbols["plain"] + 2  # inside add ebx's immediate
    with pytest.raises(PatchError, match=f"{at:#x} changed outside any site"):
        pieces.verify(pieces.tampered(at, b"\x66"))


def test_a_changed_kept_site_is_refused(pieces):
    """Kept sites are not the patcher's to change."""
    at = pieces.symbols["site_kept"]
    with pytest.raises(PatchError, match="changed outside any site"):
        pieces.verify(pieces.tampered(at, b"\x90"))


def test_a_redirected_detour_jump_is_refused(pieces):
    plan = pieces.plan(Placement.DETOUR)
    stub = pieces.emitted.stubs[0][1]
    elsewhere = rel32(stub + 16, plan.start + 5)
    with pytest.raises(PatchError, match="does not jump to its stub"):
        pieces.verify(pieces.tampered(plan.start + 1, elsewhere))


def test_a_detour_jump_replaced_by_the_original_code_is_refused(pieces):
    plan = pieces.plan(Placement.DETOUR)
    original = pieces.image.read_virtual(plan.start, plan.end - plan.start)
    assert original[0] == 0xFA  # cli
    with pytest.raises(PatchError, match="does not jump to its stub"):
        pieces.verify(pieces.tampered(plan.start, original))


def test_a_stub_returning_elsewhere_is_refused(pieces):
    plan, stub, code = pieces.emitted.stubs[0]
    jump_back = stub + len(code) - 5
    clean = pieces.load(pieces.build(), "clean.elf")
    # the stub's own jump back, encoded as the test encodes the tampered one
    assert clean.read_virtual(jump_back, 5) == b"\xe9" + rel32(plan.end, jump_back + 5)
    elsewhere = rel32(plan.end + 1, jump_back + 5)
    with pytest.raises(PatchError, match="does not return"):
        pieces.verify(pieces.tampered(jump_back + 1, elsewhere))


def test_a_privileged_instruction_put_into_a_stub_is_refused(pieces):
    plan, stub, code = pieces.emitted.stubs[0]
    assert code[:2] == b"\xc6\x05"  # mov byte ptr [vcpu_mask], 1
    with pytest.raises(PatchError, match=f"stub at {stub:#x} is not the code"):
        pieces.verify(pieces.tampered(stub, b"\xfa" + b"\x90" * 6))  # cli and nops


def test_a_trap_site_put_back_is_refused(pieces):
    plan = pieces.plan(Placement.TRAP)
    with pytest.raises(PatchError, match="not an int3"):
        pieces.verify(pieces.tampered(plan.start, b"\xfb"))  # sti again


def test_an_in_place_site_put_back_is_refused(pieces):
    plan = pieces.plan(Placement.IN_PLACE)
    assert pieces.image.read_virtual(plan.start, 2) == b"\x0f\x09"
    with pytest.raises(PatchError, match=f"{plan.start:#x}"):
        pieces.verify(pieces.tampered(plan.start, b"\x0f\x09"))  # wbinvd again


def test_a_privileged_instruction_written_over_plain_code_is_refused(pieces):
    at = pieces.symbols["plain"]
    with pytest.raises(PatchError):
        pieces.verify(pieces.tampered(at, b"\xfa" * 6))  # six cli over add ebx, imm


def test_a_site_no_plan_handled_is_refused(pieces):
    """A planner that forgot the trap site: its sti is still in the image."""
    plans = [p for p in pieces.plans if p.placement is not Placement.TRAP]
    blob = pieces.build(plans)
    patch_set = load_patch_set("xen32")
    layout, symbols = lay_out(pieces.image, patch_set)
    emitted = emit(pieces.image, layout, plans, symbols)
    with pytest.raises(PatchError, match=r"sti\s+at .*privileged and not recorded"):
        pieces.verify(pieces.load(blob), plans, emitted)
