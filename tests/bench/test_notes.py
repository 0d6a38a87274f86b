"""The table's footnotes, each computed from the figures it explains."""

import io

from rich.console import Console

from pvtool.bench import notes, view


def run(ratio: float, exits: dict, insns: int = 44_000_000, spread=(1.0, 1.0)) -> dict:
    return {"ok": True, "ratio_to_native": ratio, "exits": exits,
            "exits_total": sum(exits.values()), "insns_upper_bound": insns,
            "wall_seconds": {"min": spread[0], "max": spread[1], "median": spread[0]}}


def figures(pv: dict, native: dict | None = None, repeat: int = 1) -> dict:
    native = native or run(1.0, {"io": 4130, "interrupt": 732})
    return {"repeat": repeat, "guests": [{"name": "minikern",
                                          "modes": {"native": native, "pv": pv}}]}


def test_no_note_when_no_mode_beats_native():
    assert notes.faster_than_native(figures(run(1.2, {"io": 4130}))) == []


def test_pv_faster_with_no_exits_saved_is_not_credited_to_paravirtualization():
    (note,) = notes.faster_than_native(figures(run(0.86, {"io": 4130, "hypercall": 952})))
    assert note.startswith("pv faster than native on minikern (0.86): ")
    assert "no fewer exits (5,082 against 4,862)" in note
    assert "the same 44.0 M instructions" in note
    assert "Unicorn's own" in note and "--repeat 5" in note


def test_pv_faster_with_exits_saved_names_them():
    (note,) = notes.faster_than_native(figures(run(0.5, {"io": 30, "interrupt": 732})))
    assert "4,100 fewer exits to Python (io 4,100 fewer)" in note


def test_overlapping_runs_are_called_noise():
    native = run(1.0, {"io": 10}, spread=(1.0, 1.2))
    (note,) = notes.faster_than_native(figures(run(0.9, {"io": 10}, spread=(0.9, 1.1)),
                                               native, repeat=5))
    assert "the runs overlap (native 1-1.2 s, this mode 0.9-1.1 s)" in note
    apart = run(0.5, {"io": 10}, spread=(0.5, 0.6))
    (note,) = notes.faster_than_native(figures(apart, native, repeat=5))
    assert "overlap" not in note and "--repeat" not in note


def test_the_target_note_says_what_is_compared_and_why_over():
    limits = {"hypercall_target": 5.0, "hypercall_within_target": True,
              "hypercall64_within_target": True}
    within = notes.hypercall_target(limits)
    assert "issue 17" in within and "at most 5x an empty Unicorn hook" in within
    assert "32-bit: int 0x82 against int 0x80" in within and "64-bit: the hypercall" in within
    assert "Over it" not in within
    for width in ("hypercall_within_target", "hypercall64_within_target"):
        assert "Over it" in notes.hypercall_target({**limits, width: False})


def test_the_note_is_folded_to_80_columns_in_the_table():
    data = figures(run(0.86, {"io": 4130}))
    for guest in data["guests"]:
        for mode in guest["modes"].values():
            mode.update({"stop": {"kind": "guest-exit", "guest_code": 0},
                         "guest_passed": True, "insns_per_second": 3e6})
    out = io.StringIO()
    console = Console(file=out, width=80)
    console.print(view._workloads(data))
    text = out.getvalue()
    assert "pv faster than native on minikern" in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
