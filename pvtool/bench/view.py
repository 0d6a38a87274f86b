"""The tables `pvtool bench` prints: read from the same dictionary `--json` writes."""

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pvtool.bench import notes
from pvtool.bench.goalview import goals_table, operation_exits_tables

PREDICTED = "*"  # the stop column's mark for a trap-mode failure foretold
NULL_MODE = "pv"  # the mode whose operations are priced in null hypercalls


def render(data: dict, console: Console) -> None:
    """The tables, sized for 80 columns (a pipe's width): workloads, pvtool native
    against QEMU, then per-operation costs for each guest that printed nanobench lines,
    exits by kind for each guest, limits."""
    operations = [table for guest in data["guests"] if guest.get("operations")
                  for table in (_operations(guest, data["repeat"]),
                                *operation_exits_tables(guest))]
    exits = [_exits(guest) for guest in data["guests"]
             if any(run["ok"] for run in guest["modes"].values())]
    disk = [disk_table(data["disk"], data["repeat"])] if data.get("disk") else []
    for table in (_workloads(data), versus_qemu_table(data), *operations, *exits,
                  *disk, _limits(data["limits"]), _patcher(data["patcher"]),
                  goals_table(data["goals"])):
        console.print(table)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.2f}"


def _mips(per_second: float) -> str:
    return f"{per_second / 1e6:,.1f}"


def _workloads(data: dict) -> Table:
    title = f"Guest workloads: median of {data['repeat']} run(s), run-loop wall time"
    # eight columns: without the edges' padding, padding collapsed, they fit 80 with a
    # nine-letter guest and a million exits (guests/ioheavy)
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False,
                  collapse_padding=True)
    for name in ("guest", "mode", "wall ms", "/native", "M insns", "M insn/s", "exits"):
        table.add_column(name, no_wrap=True, min_width=len(name),
                         justify="left" if name in ("guest", "mode") else "right")
    table.add_column("stop")
    not_run = []
    for guest in data["guests"]:
        for mode, run in guest["modes"].items():
            if not run["ok"]:
                table.add_row(guest["name"], mode, "-", "-", "-", "-", "-", "[red]not run[/]")
                not_run.append(f"{guest['name']} {mode} not run: {run['error']}")
                continue
            ratio = run["ratio_to_native"]
            stop = _stop(run, mode)
            table.add_row(guest["name"], mode, _ms(run["wall_seconds"]["median"]),
                          f"{ratio:.2f}" if ratio is not None else "-",
                          f"{run['insns_upper_bound'] / 1e6:,.1f}",
                          _mips(run["insns_per_second"]), f"{run['exits_total']:,}", stop)
    table.caption = "M insns: an upper bound (whole slices); no exact count is taken"
    if any(_predicted_failure(run, mode) for guest in data["guests"]
           for mode, run in guest["modes"].items() if run["ok"]):
        table.caption += f"\n{PREDICTED}: self-tests fail under trap, as predicted"
    table.caption = "\n".join([table.caption, *map(notes.fold, notes.faster_than_native(data)),
                               *map(notes.fold, _failed_stops(data)), *map(notes.fold, not_run)])
    table.caption_justify = "left"
    return table


def versus_qemu_table(data: dict) -> Table:
    """A row per guest: pvtool's native run loop against the whole QEMU process, and
    against it less QEMU's start-up; no ratio where the two printed different bytes."""
    qemu, qemu64 = data["qemu"], data.get("qemu64")
    judges = "qemu-system-i386" + ("/x86_64" if qemu64 else "")  # by the guest's width
    title = f"pvtool native vs {judges} -kernel: median of {data['repeat']} run(s)"
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False)
    for name in ("guest", "pvtool ms", "QEMU ms", "start ms", "/QEMU", "/less start"):
        table.add_column(name, no_wrap=True, min_width=len(name),
                         justify="left" if name == "guest" else "right")
    table.add_column("output", no_wrap=True)
    refused = []
    for guest in data["guests"]:
        row = guest["qemu"]
        if not row["ok"]:
            table.add_row(guest["name"], "-", "-", "-", "-", "-", "[red]no ratio[/]")
            refused.append(f"[red]{guest['name']}: {escape(row['error'])}[/]")
            continue
        less = row["pvtool_over_qemu_less_startup"]
        table.add_row(guest["name"], _ms(row["pvtool_seconds"]),
                      _ms(row["wall_seconds"]["median"]), _ms(row["startup_seconds"]["median"]),
                      f"{row['pvtool_over_qemu']:.2f}", f"{less:.2f}" if less else "-",
                      "same")
    table.caption = "\n".join([
        "pvtool ms: its run loop. QEMU ms: the whole QEMU process.",
        "start ms: QEMU's start-up alone (a kernel that exits at once), timed",
        "before each of the guest's runs. same: the same bytes on COM1 and the",
        "same exit code as pvtool, every run.",
        *(f"{side['program']}: {side['version'] or side['error']}"
          for side in (qemu, qemu64) if side), *refused,
        *filter(None, (_uncounted_line(guest) for guest in data["guests"]))])
    table.caption_justify = "left"
    return table


def _uncounted_line(guest: dict) -> str | None:
    """The guest's native run without Unicorn's instruction count (bench/uncounted.py),
    when it could be taken."""
    row = guest["qemu"].get("uncounted") or {}
    if not row.get("ok"):
        return None
    over = row["over_qemu_less_startup"]
    return (f"{guest['name']} without the instruction count: {_ms(row['seconds'])} ms, "
            f"the count costs {row['counted_over_uncounted']:.2f}x"
            + (f"; uncounted alone is {over:.2f}x QEMU less start-up" if over else ""))


def _operations(guest: dict, repeat: int) -> Table:
    """Adams and Agesen's nanobenchmark table: operations down, for each mode the
    cycles per operation and, beside every mode but native, its factor to native;
    for PV, the cost in null hypercalls too (the unit the issue's targets use)."""
    modes = list(guest["modes"])
    title = (f"Per-operation cost, {guest['name']}: rdtsc cycles / n, "
             f"median of {repeat} run(s)")
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", collapse_padding=True)
    table.add_column("operation", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    for mode in modes:
        table.add_column(f"{mode}\ncyc/op", justify="right", no_wrap=True)
        if mode != "native":
            table.add_column(f"{mode}\n/native", justify="right", no_wrap=True)
    table.add_column(f"{NULL_MODE}\n/null", justify="right", no_wrap=True)
    for name, row in guest["operations"].items():
        ns = sorted({figure["n"] for figure in row.values() if figure})
        cells = [name, "/".join(f"{n:,}" for n in ns)]
        for mode in modes:
            figure = row.get(mode)
            per_op = figure["cycles_per_op"] if figure else None
            cells.append(f"{per_op:,.0f}" if per_op is not None else "-")
            if mode != "native":
                cells.append(_factor(figure, "factor_to_native"))
        cells.append(_factor(row.get(NULL_MODE), "null_hypercalls"))
        table.add_row(*cells)
    table.caption = (
        "cyc/op: the guest's rdtsc delta / n. Under pvtool rdtsc is Unicorn's,\n"
        "i.e. the host's time-stamp counter: host cycles, every exit to pvtool's\n"
        "Python included (native too: interrupts, faults and port I/O reach\n"
        "Python hooks). /native: cyc/op over native's cyc/op. /null: in null\n"
        "hypercalls, each PV run's cyc/op over a null hypercall's timed by rdtsc\n"
        "around it (the limits' tiny Xen kernel), median of the runs.")
    table.caption_justify = "left"
    return table


def _factor(figure: dict | None, key: str) -> str:
    value = figure[key] if figure else None
    return f"{value:,.1f}x" if value is not None else "-"


def _stop(run: dict, mode: str) -> str:
    """How the guest ended. Under trap-and-emulate a guest's self-tests of the
    instructions trapping cannot virtualize fail by design: that is no bench failure."""
    stop = run["stop"]
    text = {"guest-exit": "exit", "shutdown": "shutdown"}.get(stop["kind"], stop["kind"])
    text = f"{text} {stop['guest_code']}"
    if run["guest_passed"]:
        return text
    if _predicted_failure(run, mode):
        return f"{text}{PREDICTED}"
    return f"[red]{text} FAILED[/]"


def _failed_stops(data: dict) -> list[str]:
    """Why each run that ended otherwise than on purpose stopped (a crash's reason)."""
    return [f"{guest['name']} {mode}: {run['stop']['kind']}: {run['stop']['reason']}"
            for guest in data["guests"] for mode, run in guest["modes"].items()
            if run["ok"] and not run["guest_passed"] and not _predicted_failure(run, mode)
            and run["stop"]["kind"] != "guest-exit"]


def _predicted_failure(run: dict, mode: str) -> bool:
    return (mode == "trap" and not run["guest_passed"]
            and run["stop"]["kind"] == "guest-exit")


def _exits(guest: dict) -> Table:
    """One guest's exit kinds down, then its hypercalls by name; for each mode, the
    count of one run and the mean host microseconds of each exit (a hypercall's: of
    the exits it was) in one run under --profile (machine/profile.py).
    A table per guest keeps three modes' columns within 80."""
    columns = [(mode, run) for mode, run in guest["modes"].items() if run["ok"]]
    profiles = {mode: {row["kind"]: row for row in (run.get("profile") or {}).get("kinds", [])}
                for mode, run in columns}
    kinds = sorted({kind for _, run in columns for kind in run["exits"]})
    calls = sorted({name for _, run in columns for name in run["hypercalls"]})
    table = Table(box=box.SIMPLE_HEAD, title=f"Exits by kind, {guest['name']} (one run; "
                  "us: mean host time, profiled)", title_justify="left", collapse_padding=True)
    table.add_column("exit", no_wrap=True)
    for mode, _ in columns:
        table.add_column(mode, justify="right", no_wrap=True)
        table.add_column("us", justify="right", no_wrap=True)
    for kind in kinds:
        cells = [kind]
        for mode, run in columns:
            row = profiles[mode].get(kind)
            cells += [f"{run['exits'].get(kind, 0):,}",
                      f"{row['mean_us']:,.1f}" if row and row["count"] else "-"]
        table.add_row(*cells)
    called = {mode: {row["name"]: row for row in (run.get("profile") or {}).get("labels", [])
                     if row["kind"] == "hypercall"} for mode, run in columns}
    for call in calls:
        cells = [f"  {call}"]
        for mode, run in columns:
            row = called[mode].get(call)
            cells += [f"{run['hypercalls'].get(call, 0):,}",
                      f"{row['mean_us']:,.1f}" if row else ""]
        table.add_row(*cells, style="dim")
    shares = [f"{mode} {(run.get('profile') or {}).get('python_share', 0):.0%}"
              for mode, run in columns if run.get("profile")]
    if shares:
        table.caption = "pvtool's Python, share of the profiled run: " + ", ".join(shares)
        table.caption_justify = "left"
    return table


def disk_table(disk: dict, repeat: int) -> Table:
    """A row per way of giving minikern a disk: sectors a host second, and exits and
    hypercalls a sector moved; blkfront's verdict against the ATA paths last."""
    title = (f"Disk I/O: read {disk['sectors']:,} sectors, write them, flush; "
             f"fastest of {repeat} run(s)")
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False,
                  collapse_padding=True)
    for name in ("way", "driver", "req", "sect/s", "exits/sect", "io/sect", "hcalls/sect"):
        table.add_column(name, no_wrap=True,
                         justify="left" if name in ("way", "driver") else "right")
    table.add_column("result")
    for row in disk["rows"]:
        cells = [row["name"], row["driver"], str(row["sectors_per_request"])]
        if not row["ok"]:
            table.add_row(*cells, "-", "-", "-", "-", f"[red]not run: {escape(row['error'])}[/]")
            continue
        rate = row["sectors_per_second"]
        good = row["passed"] and row["disk_written"]
        table.add_row(*cells, f"{rate:,.0f}" if rate is not None else "-",
                      f"{row['exits_per_sector']:,.2f}", f"{row['io_exits_per_sector']:,.2f}",
                      f"{row['hypercalls_per_sector']:,.2f}",
                      "ok" if good else "[red]FAIL[/]")
    table.caption = "\n".join([
        "A sector's cost: the workload's run less one with diskbench=0 (boot,",
        "driver start, a flush), over the sectors moved (read and written);",
        "sect/s: the same difference in host seconds (- when within noise).",
        "ok: the workload's line said ok and the disk holds what it wrote",
        "(FAIL: the JSON has the line).",
        _disk_verdict(disk["blkfront"])])
    table.caption_justify = "left"
    return table


def _disk_verdict(verdict: dict) -> str:
    fewer = verdict["times_fewer_exits"]
    if not fewer:
        return "blkfront against ATA: not measured (a way did not run or pass)"
    reached = ", ".join(f"x{req}: {times:,.1f}x" if times is not None else f"x{req}: no exits"
                        for req, times in fewer.items())
    mark = "[green]met[/]" if verdict["met"] else "[red]not met[/]"
    return (f"blkfront's exits a sector, times fewer than ATA's fewest: {reached} "
            f"(target {verdict['target']}x: {mark})")


def _limits(limits: dict) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Limits, measured in this run", title_justify="left")
    table.add_column("measure", no_wrap=True)
    table.add_column("figure", justify="right", no_wrap=True)
    table.add_column("how")
    loop = limits["register_loop"]
    table.add_row("raw Unicorn, register loop", f"{_mips(loop['insns_per_second'])} M insn/s",
                  f"{loop['insns']:,} insns, no hooks")
    sieve = limits["sieve"]
    if sieve is not None:
        table.add_row("raw Unicorn, minikern sieve", f"{_mips(sieve['insns_per_second'])} M insn/s",
                      f"{sieve['function']}: {sieve['insns']:,} insns, no hooks, count=0")
        table.add_row("  same, count= slices",
                      f"{_mips(sieve['counted_insns_per_second'])} M insn/s",
                      "no hooks, 1 M-instruction slices as pvtool runs")
    else:
        table.add_row("raw Unicorn, sieve", "-", limits["sieve_error"] or "no image")
    native = limits["pvtool_native"]
    if native is not None:
        row = f"{_mips(native['insns_per_second'])} M insn/s"
        note = "whole guest, upper-bound count"
        if sieve is not None:
            note += f"; raw sieve is x{sieve['insns_per_second'] / native['insns_per_second']:.2f}"
        table.add_row("pvtool native", row, note)
    for bits in (32, 64):
        for row in _hypercall_rows(limits, bits):
            table.add_row(*row)
    floor = limits["hypercall_floor"]
    table.add_row("a hypercall's floor", f"{_us(floor['seconds_per_call'])} us",
                  f"int 0x80 hooked as int 0x82 is, CS and 6 registers read and "
                  f"EAX written in place (no call into Unicorn): "
                  f"{limits['floor_over_empty_hook']:.1f}x the empty hook")
    table.add_row("host TSC rate", f"{limits['null_hypercall']['tsc_hz'] / 1e9:,.2f} GHz",
                  "the 32-bit null hypercalls' rdtsc cycles over their seconds")
    memory = limits["peak_memory"]
    if memory is not None:
        table.add_row("peak memory", f"{memory['peak_kib'] / 1024:,.1f} MiB",
                      f"{memory['source']} of a child process, {memory['mode']} run of "
                      f"{memory['image']} ({memory['baseline_kib'] / 1024:,.1f} MiB after "
                      f"imports; its ru_maxrss {memory['ru_maxrss_kib'] / 1024:,.1f} MiB "
                      "includes the parent's size at fork)")
    elif limits["peak_memory_error"]:
        table.add_row("peak memory", "-", limits["peak_memory_error"])
    table.caption = notes.fold(notes.hypercall_target(limits))
    table.caption_justify = "left"
    return table


HYPERCALL_PATHS = {  # bits: (the hook's name, the hook's exit, the hypercall's, key suffix)
    32: ("INTR", "int 0x80", "int 0x82", ""),
    64: ("SYSCALL", "syscall", "the hypercall page's syscall", "64"),
}


def _hypercall_rows(limits: dict, bits: int) -> list[tuple[str, str, str]]:
    """The BITS-bit empty hook, null hypercall and their ratio (goal 2's row)."""
    hook_name, hook_exit, path, suffix = HYPERCALL_PATHS[bits]
    hook, call = limits[f"empty_hook{suffix}"], limits[f"null_hypercall{suffix}"]
    within = limits[f"hypercall{suffix}_within_target"]
    verdict = "[green]within[/]" if within else "[red]over[/]"
    ratio = limits[f"hypercall{suffix}_over_empty_hook{suffix}"]
    return [
        (f"{bits}-bit empty {hook_name} hook", f"{_us(hook['seconds_per_call'])} us",
         f"{hook_exit} x {hook['calls']:,}, empty Python callback"),
        (f"{bits}-bit null hypercall", f"{_us(call['seconds_per_call'])} us",
         f"xen_version via {path} x {call['calls']:,}"),
        ("  same, in rdtsc cycles", f"{call['cycles_per_call']:,.0f} cyc",
         "the kernel's rdtsc around its loop: nanobench's unit"),
        ("  hypercall / empty hook", f"{ratio:.1f}x",
         f"{verdict} the target of {limits['hypercall_target']:g}x"),
    ]


def _patcher(rows: list[dict]) -> Table:
    """`pvtool patch` of each image, in a child process: time, rate, peak memory."""
    table = Table(box=box.SIMPLE_HEAD, title="The patcher: pvtool patch, one child "
                  "process per image", title_justify="left", pad_edge=False)
    for name in ("image", "insns", "sites", "seconds", "k insn/s", "peak MiB",
                 "port lines", "share %"):
        table.add_column(name, no_wrap=True, justify="left" if name == "image" else "right")
    goal, xen, failed = None, None, []
    for row in rows:
        name = escape(row["image"].rsplit("/", 1)[-1])
        if not row["ok"]:
            table.add_row(name, "-", "-", "-", "-", "[red]failed[/]", "-", "-")
            failed.append(f"[red]{name}: {escape(row['error'])}[/]")
            continue
        goal, port = row["goal_insns_per_second"], row["table2"]
        xen = f"{port['xen_linux_lines']:,} lines, {port['xen_linux_share_percent']}%"
        rate = f"{row['insns_per_second'] / 1000:,.0f}"
        share = port["share_percent"]
        table.add_row(name, f"{row['instructions']:,}", f"{row['sites']:,}",
                      f"{row['seconds']:,.2f}",
                      rate if row["within_goal"] else f"[yellow]{rate}[/]",
                      f"{row['peak_kib'] / 1024:,.1f}", f"{port['lines']:,}",
                      "-" if share is None else f"{share:.2f}")
    table.caption = "\n".join([
        "insns: decoded by discovery. seconds: the whole patch, imports excluded.",
        "peak: the child's VmHWM, imports included."
        + (f" Goal: {goal / 1000:,.0f}k insn/s." if goal else ""),
        "port lines, share: pvtool diffstat of the listing diff (Table 2)"
        + (f"; Xen's hand port of Linux: {xen}." if xen else "."), *failed])
    table.caption_justify = "left"
    return table
