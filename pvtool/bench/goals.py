"""Issue 17's goals, each as a ratio of figures measured in the same bench run, its
target and whether it is met: the bench's goals table. Read from the dictionary
`--json` writes, like the notes (bench/notes.py), so that the table says only what
this run measured: a goal whose inputs were not measured gets a row that says why,
never a figure from elsewhere.

1. Under PV, pte_update, cr3_switch and ctxswitch each at most 2 null hypercalls:
   nanobench's cycles per operation over a null hypercall's of the same width, timed
   around each PV run (bench/workloads.py); a row per operation and width (nanobench
   and nanobench64), with the exits the operation takes under PV (bench/opexits.py)
   beside it: each exit costs at least about a null hypercall, so an operation of two
   exits cannot cost much less than two.
2. A null hypercall at most 5 empty Unicorn hooks, a row per width, each hypercall
   against a hook on its own exit instruction: int 0x82 against an empty INTR hook,
   the 64-bit hypercall page's syscall against an empty SYSCALL hook (the limits,
   bench/nullcall.py and bench/emptyhook.py).
3. pvtool native at most 1.5x QEMU's wall time on a compute-bound guest and 3x on an
   exit-heavy one (bench/versus_qemu.py): pvtool's run loop over QEMU's run less its
   start-up, so that neither side's start-up is counted. A guest's class is told from
   its own native run, never its name: its exits per million instructions."""

GOAL1_OPERATIONS = ("pte_update", "cr3_switch", "ctxswitch")
WIDTHS = (32, 64)
GOAL1_TARGET = 2.0  # null hypercalls an operation
HYPERCALL_TARGET = 5.0  # goal 2: empty hooks a null hypercall
COMPUTE_BOUND_TARGET = 1.5  # goal 3: pvtool native over QEMU
EXIT_HEAVY_TARGET = 3.0
# An exit costs pvtool tens to hundreds of host microseconds, a million instructions
# tens of milliseconds of emulation: under 10 exits a million instructions, the exits
# take about 1% of a run (compute-bound); over 10,000 (one exit every hundred
# instructions), they take more time than the instructions (exit-heavy).
COMPUTE_BOUND_MAX = 10
EXIT_HEAVY_MIN = 10_000
PV = "pv"


def goals_table(data: dict) -> list[dict]:
    """The goals' rows from a bench's dictionary (BenchReport.to_dict without them)."""
    return [*_goal1(data["guests"]), *_goal2(data["limits"]), *_goal3(data["guests"])]


def _row(goal: int, name: str, guest: str | None, bits: int | None, ratio: float | None,
         target: float, unit: str, note: str | None = None,
         exits_per_op: float | None = None) -> dict:
    """A goal's row: MET is None when RATIO was not measured (NOTE says why; on a
    measured row it says what else to read the ratio beside). BITS is the width
    measured (None for a row of no guest); EXITS_PER_OP, goal 1's exits under PV."""
    return {"goal": goal, "name": name, "guest": guest, "bits": bits, "unit": unit,
            "ratio": round(ratio, 3) if ratio is not None else None, "target": target,
            "met": ratio <= target if ratio is not None else None, "note": note,
            "exits_per_op": exits_per_op}


def _goal1(guests: list[dict]) -> list[dict]:
    """A row per goal-1 operation, width and guest of that width that printed
    nanobench lines; one saying so for a width none of whose guests did."""
    benched = [guest for guest in guests if guest.get("operations")]
    rows = []
    for op in GOAL1_OPERATIONS:
        for bits in WIDTHS:
            printed = [guest for guest in benched
                       if op in guest["operations"] and guest["bits"] == bits]
            if not printed:
                rows.append(_row(1, f"{op} under PV", None, bits, None, GOAL1_TARGET,
                                 "null hypercalls", f"not measured: no {bits}-bit guest of "
                                 f"this run printed nanobench's {op}"))
            for guest in printed:
                ratio, why = _in_null_hypercalls(guest, op)
                rows.append(_row(1, f"{op} under PV", guest["name"], bits, ratio,
                                 GOAL1_TARGET, "null hypercalls", why,
                                 _pv_exits_per_op(guest, op)))
    return rows


def _pv_exits_per_op(guest: dict, op: str) -> float | None:
    """The exits OP takes under PV (bench/opexits.py), None if not measured."""
    row = (guest.get("operation_exits") or {}).get("operations", {}).get(op) or {}
    figure = row.get(PV)
    return figure["exits_per_op"] if figure else None


def _in_null_hypercalls(guest: dict, op: str) -> tuple[float | None, str | None]:
    run = guest["modes"].get(PV)
    if run is None:
        return None, "not measured: this pvtool has no PV mode"
    if not run["ok"]:
        return None, f"not measured: PV not run: {run['error']}"
    figure = guest["operations"][op].get(PV)
    if figure is None:
        return None, f"not measured: the PV run printed no {op} line"
    if figure["null_hypercalls"] is None:
        return None, "not measured: no null hypercall was priced around the PV runs"
    return figure["null_hypercalls"], None


def _goal2(limits: dict) -> list[dict]:
    """A row per width: its null hypercall over the empty hook on its exit instruction."""
    return [_row(2, "null hypercall / empty hook", None, 32,
                 limits["hypercall_over_empty_hook"], HYPERCALL_TARGET, "empty hooks",
                 "xen_version by int 0x82 against int 0x80 into an empty INTR hook"),
            _row(2, "null hypercall / empty hook", None, 64,
                 limits["hypercall64_over_empty_hook64"], HYPERCALL_TARGET, "empty hooks",
                 "xen_version by the hypercall page's syscall against syscall into an "
                 "empty SYSCALL hook")]


def guest_class(guest: dict) -> str | None:
    """"compute-bound", "exit-heavy" or None, from the guest's native run's exits a
    million instructions (None too if native did not run)."""
    native = guest["modes"].get("native") or {}
    if not native.get("ok") or not native["insns_upper_bound"]:
        return None
    per_million = native["exits_total"] * 1e6 / native["insns_upper_bound"]
    if per_million < COMPUTE_BOUND_MAX:
        return "compute-bound"
    if per_million > EXIT_HEAVY_MIN:
        return "exit-heavy"
    return None


def _goal3(guests: list[dict]) -> list[dict]:
    """A row per guest of either class; a row saying so for a class without one."""
    rows = []
    for kind, target in (("compute-bound", COMPUTE_BOUND_TARGET),
                         ("exit-heavy", EXIT_HEAVY_TARGET)):
        name = f"native / QEMU, {kind}"  # pvtool's native run
        members = [guest for guest in guests if guest_class(guest) == kind]
        if not members:
            rows.append(_row(3, name, None, None, None, target, "QEMU's wall time",
                             f"not measured: no {kind} guest in this run ({_class_rule(kind)})"))
        for guest in members:
            ratio, why = _over_qemu(guest["qemu"])
            rows.append(_row(3, name, guest["name"], guest["bits"], ratio, target,
                             "QEMU's wall time", why))
    return rows


def _class_rule(kind: str) -> str:
    if kind == "compute-bound":
        return f"under {COMPUTE_BOUND_MAX} exits a million instructions natively"
    return f"over {EXIT_HEAVY_MIN:,} exits a million instructions natively"


def _over_qemu(qemu: dict) -> tuple[float | None, str | None]:
    if not qemu["ok"]:
        return None, f"not measured: {qemu['error']}"
    ratio = qemu["pvtool_over_qemu_less_startup"]
    if ratio is None:
        return None, "not measured: QEMU's run was no longer than its start-up"
    return ratio, (f"{qemu['pvtool_over_qemu']:.2f}x over QEMU's whole run, its start-up "
                   "included")
