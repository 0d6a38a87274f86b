"""The footnotes that explain a surprising figure, each computed from the figures it
explains (the dictionary `--json` writes), so a note appears only when it holds; and
how a note is folded under a table."""

import textwrap

from rich.markup import escape

NATIVE = "native"
NOTE_WIDTH = 78


def fold(text: str) -> str:
    """A footnote folded to a pipe's 80 columns, as the hand-broken captions are."""
    return escape(textwrap.fill(text, NOTE_WIDTH, break_on_hyphens=False))


def faster_than_native(data: dict) -> list[str]:
    """A note per guest and mode that ran faster than native: what the figures say
    about why. Paravirtualizing saves exits only where the patched code avoids them;
    minikern's PV run takes more exits than its native one (hypercalls, page-table
    writes) yet has been measured under 1 (issue 4: 0.87), so a ratio under 1 with no
    exits saved is Unicorn's own speed between exits and the machine's load, and the
    note says so rather than crediting paravirtualization."""
    notes = []
    for guest in data["guests"]:
        native = guest["modes"].get(NATIVE) or {}
        if not native.get("ok"):
            continue
        for mode, run in guest["modes"].items():
            ratio = run.get("ratio_to_native") if run["ok"] else None
            if mode != NATIVE and ratio is not None and ratio < 1:
                notes.append(f"{mode} faster than native on {guest['name']} "
                             f"({ratio:.2f}): {_why_faster(native, run, data['repeat'])}")
    return notes


def _why_faster(native: dict, run: dict, repeat: int) -> str:
    saved = {kind: count - run["exits"].get(kind, 0)
             for kind, count in native["exits"].items() if count > run["exits"].get(kind, 0)}
    fewer = native["exits_total"] - run["exits_total"]
    if fewer > 0:
        kinds = ", ".join(f"{kind} {count:,}" for kind, count in saved.items())
        why = f"it took {fewer:,} fewer exits to Python ({kinds} fewer)"
    else:
        why = (f"it took no fewer exits ({run['exits_total']:,} against "
               f"{native['exits_total']:,}) for {_same_insns(native, run)}, so the time "
               "saved is Unicorn's own, between exits, not paravirtualization's")
    return why + _noise(native, run, repeat)


def _same_insns(native: dict, run: dict) -> str:
    mine, theirs = run["insns_upper_bound"], native["insns_upper_bound"]
    if mine == theirs:
        return f"the same {mine / 1e6:,.1f} M instructions"
    return f"{mine / 1e6:,.1f} M instructions against {theirs / 1e6:,.1f} M"


def _noise(native: dict, run: dict, repeat: int) -> str:
    """Whether the runs' spreads overlap: then the order of the medians is noise."""
    if repeat == 1:
        return "; one run each: --repeat 5 tells a gap from noise"
    if run["wall_seconds"]["max"] >= native["wall_seconds"]["min"]:
        return (f"; the runs overlap (native {_span(native)}, this mode {_span(run)}), "
                "so the gap is within the machine's noise")
    return ""


def _span(run: dict) -> str:
    wall = run["wall_seconds"]
    return f"{wall['min']:.3g}-{wall['max']:.3g} s"


def hypercall_target(limits: dict) -> str:
    """What the hypercall target compares, and where it comes from."""
    note = (f"target: issue 17 asks that a null hypercall (xen_version through pvtool's "
            f"Python hypervisor) cost at most {limits['hypercall_target']:g}x an empty "
            "Unicorn hook on the instruction it leaves the guest by (a Python callback "
            "that does nothing), both timed in this run: the hook is what any exit to "
            "Python costs. 32-bit: int 0x82 against int 0x80 into an INTR hook; 64-bit: "
            "the hypercall page's syscall against syscall into a SYSCALL hook.")
    if not (limits["hypercall_within_target"] and limits["hypercall64_within_target"]):
        note += (" Over it: the floor row is what any hypercall must cost (its "
                 "registers read in one batch, EAX written); the rest is pvtool's "
                 "Python: dispatch, the handler and the checks on return.")
    return note
