"""Issue 17's goal 5: trap-and-emulate keeps the same validation as PV, so that the
bench compares the two fairly. The same kernel, booted unpatched under --trap and
patched under PV, stores page-table entries into its live tables: both modes take
the store through the same validator (hv/pagetables.py, by ptwr), write the valid
entry, and crash the domain with the same reason on the one the validator refuses.
The kernels are trap mode's isolation tests' (tests/hv/test_trapmode.py)."""

import pytest

from pvtool.machine.stop import StopKind
from pvtool.patch.pipeline import patch_image
from pvtool.run import Mode, RunOptions, run_image
from tests.guests_asm.build import GuestBuilder
from tests.hv.test_trapmode import ESCAPES

MAX_INSNS = 5_000_000


@pytest.fixture(scope="module")
def both_modes(tmp_path_factory):
    """run(name) -> {mode: (RunResult, output)} of ESCAPES[name] under trap and PV."""
    folder = tmp_path_factory.mktemp("fair-validation")
    builder = GuestBuilder(folder)

    def run(name: str) -> dict:
        elf = builder.build('.include "macros.inc"\n' + ESCAPES[name]).elf
        patched = folder / f"{name}.pv.elf"
        patch_image(elf, patched)
        results = {}
        for mode, image in ((Mode.TRAP, elf), (Mode.PV, patched)):
            output = bytearray()
            result = run_image(image, RunOptions(mode=mode, max_insns=MAX_INSNS), output.extend)
            results[mode] = result, bytes(output)
        return results

    return run


def test_a_valid_store_is_validated_and_written_in_both_modes(both_modes):
    for mode, (result, output) in both_modes("valid").items():
        assert result.stop.kind is StopKind.GUEST_EXIT and result.stop.code == 0, mode
        assert output == b"00005afe\n", mode  # read back through the new mapping
        assert result.exits["ptwr"] == 1, mode


def test_a_store_the_validator_refuses_under_pv_is_refused_under_trap_alike(both_modes):
    reasons = set()
    for mode, (result, output) in both_modes("map_hypervisor").items():
        assert result.stop.kind is StopKind.CRASH, (mode, result.stop.describe())
        assert "writes an invalid page-table entry: frame 0x" in result.stop.reason, mode
        assert "is not the domain's" in result.stop.reason, mode
        assert b"BAD" not in output, mode  # nothing ran after the refused store
        reasons.add(result.stop.reason)
    assert len(reasons) == 1, reasons  # the same validator, the same words


def test_a_base_the_validator_refuses_is_refused_in_both_modes(both_modes):
    """A CR3 load of tables mapping a hypervisor frame: under trap the emulated mov to
    CR3 is refused and the domain crashed; under PV the glue's MMUEXT_NEW_BASEPTR gets
    Xen's error back and the glue gives up, as a kernel on Xen would."""
    results = both_modes("new_base")
    for mode, (result, output) in results.items():
        assert result.stop.kind is StopKind.CRASH, (mode, result.stop.describe())
        assert b"BAD" not in output, mode
    assert "which the domain does not own" in results[Mode.TRAP][0].stop.reason
    assert "mmuext_op refused a new page directory" in results[Mode.PV][0].stop.reason
