"""pvtool's command line: each command parses, calls one function, renders its result."""

import sys
from contextlib import contextmanager
from pathlib import Path

import click

from pvtool import console, interrupts
from pvtool.bench import DISK_SECTORS
from pvtool.cli.group import PvtoolGroup, debug_option, interrupted
from pvtool.cli.options import (
    EXISTING_FILE,
    STDOUT,
    check_output_path,
    json_option,
    mode_option,
    write_json,
)
from pvtool.errors import (
    GuestFault,
    GuestHaltedError,
    GuestLimitError,
    InputMissingError,
    UsageError,
)


@click.group(cls=PvtoolGroup, name="pvtool",
             context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Each command's --help shows examples.")
@debug_option(envvar="PVTOOL_DEBUG", show_envvar=True)
@click.version_option(package_name="pvtool")
def cli() -> None:
    """Paravirtualize small x86 guest kernels and run them under a Python hypervisor."""


@cli.command(epilog="""\b
Examples:
  pvtool patch build/guests/hello.elf -o build/hello.pv.elf
  pvtool patch build/guests/minikern.elf --json - > minikern.report.json""")
@debug_option()
@click.argument("image", type=EXISTING_FILE)
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="The patched image (default: IMAGE's name with .pv.elf). Its listing "
                   "diff and JSON report are written beside it (.diff, .json).")
@click.option("--patch-set", default=None,
              help="A patch set in patches/ (or a folder holding rules.toml and glue.asm). "
                   "Default: xen32 for a 32-bit kernel, xen64 for a 64-bit one.")
@json_option("the report (as OUT.json)")
@click.option("--sites", is_flag=True, help="Also list every site, with why it is placed so.")
def patch(image: Path, output: Path | None, patch_set: str | None, json_path: Path | None,
          sites: bool) -> None:
    """Rewrite IMAGE's privileged and sensitive instructions into Xen PV stubs."""
    from pvtool.patch.pipeline import patch_image
    from pvtool.views import patch_view

    check_output_path(json_path)
    report = patch_image(image, output or image.with_suffix(".pv.elf"), patch_set)
    if json_path is not None:
        write_json(json_path, report.to_dict())
    if str(json_path) != STDOUT:
        patch_view.render(report, console.stdout, sites)


@cli.command(epilog="""\b
Examples:
  pvtool run --native build/guests/hello.elf
  pvtool run build/hello.pv.elf --trace --json build/hello.run.json
  pvtool run --native --profile build/guests/hello.elf""")
@debug_option()
@click.argument("image", type=EXISTING_FILE)
@mode_option("native", "Boot IMAGE (a Multiboot kernel) on the emulated bare PC, in ring 0.")
@mode_option("pv", "Boot IMAGE paravirtualized (the default: an image with Xen notes).")
@mode_option("trap", "Boot IMAGE (an unpatched Multiboot kernel) in ring 1 under the "
                     "hypervisor (a 64-bit one at CPL 3, from its 64-bit entry), "
                     "emulating each privileged instruction it traps on.")
@click.option("--max-insns", type=click.IntRange(min=1), metavar="N",
              help="Stop the guest after about N instructions.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop the guest after this much wall-clock time.")
@click.option("--memory", type=click.IntRange(min=4, max=3072), default=128,
              show_default=True, metavar="MIB", help="The guest's RAM.")
@click.option("--cmdline", default="", help="The kernel command line.")
@click.option("--disk", "disks", type=EXISTING_FILE, multiple=True, metavar="FILE",
              help="A raw disk image for an IDE disk (written through to the file). "
                   "Repeat for more, up to 4, in QEMU's -drive index order: primary "
                   "master, primary slave, secondary master, secondary slave.")
@click.option("--snapshot", is_flag=True, help="Never write to the --disk files.")
@click.option("--input", "input_file", type=EXISTING_FILE, metavar="FILE",
              help="Bytes the serial port receives (default: standard input, if not a tty).")
@click.option("--module", "modules", type=EXISTING_FILE, multiple=True, metavar="FILE",
              help="A Multiboot module (repeat for more); a PV kernel gets them as "
                   "start_info's mod_start and mod_len (docs/ABI.md).")
@click.option("--quiet", is_flag=True, help="No summary of exits on stderr.")
@json_option("the summary (its exits, the stop and the registers at it)", stdout_ok=False)
@click.option("--trace", is_flag=True, help="Print hypercalls on stderr as they happen.")
@click.option("--trace-int", is_flag=True,
              help="Print each interrupt and exception on stderr as it is delivered, as "
                   "QEMU's -d int does (in PV mode: bounces and event upcalls).")
@click.option("--keys", default="", metavar="TEXT",
              help="Type TEXT on the PS/2 keyboard (US layout), one key down or up every "
                   "0.1 s of virtual time; \\n is Enter, \\e Escape, \\t Tab, \\b "
                   "Backspace.")
@click.option("--xen-console", "xen_console_path", type=click.Path(path_type=Path),
              metavar="FILE", help="PV: write what the guest prints with console_io (Xen's "
                                   "own console) to FILE, not to stderr; the console "
                                   "ring (the domain's console) goes to stdout.")
@click.option("--host-tsc", is_flag=True,
              help="rdtsc reads the host's TSC (for benchmarks timing themselves), not "
                   "virtual time; output that depends on it is then not reproducible.")
@click.option("--vcpus", type=int, default=1, show_default=True, metavar="N",
              help="PV: give the domain N vCPUs (1-32, shared_info's vcpu_info slots), "
                   "time-sliced round-robin on one host thread; vCPU 0 boots, the others "
                   "wait for VCPUOP_initialise and VCPUOP_up.")
@click.option("--screen", "screen_path", type=click.Path(path_type=Path),
              metavar="FILE", help="--native: write the text screen at the end to FILE "
                                   "(25 lines, trailing blanks trimmed, UTF-8).")
@click.option("--pc", type=click.Choice(["i386", "x86_64"]),
              help="--native: the PC of qemu-system-i386 or of qemu-system-x86_64 (the "
                   "default for an ELF64 kernel); a 32-bit kernel that enters long mode "
                   "itself needs x86_64.")
@click.option("--profile", is_flag=True,
              help="Time every exit: a table of host time by exit kind (count, total, "
                   "mean) and the emulator's share against pvtool's Python, on stderr "
                   "after the run (and in --json); the run itself is slower.")
def run(image: Path, mode: str | None, max_insns: int | None, timeout: float | None,
        memory: int, cmdline: str, disks: tuple[Path, ...], snapshot: bool,
        input_file: Path | None, modules: tuple[Path, ...], quiet: bool,
        json_path: Path | None, trace: bool, trace_int: bool, keys: str,
        xen_console_path: Path | None, host_tsc: bool, vcpus: int,
        screen_path: Path | None, pc: str | None, profile: bool) -> None:
    """Boot IMAGE and run it until it stops. The guest's serial output goes to stdout;
    pvtool exits with the guest's isa-debug-exit code (see README, "Exit status")."""
    from pvtool.run import Mode, RunOptions, check_disks, check_vcpus
    from pvtool.views import run_view

    if screen_path is not None and mode != "native":
        raise UsageError("--screen needs --native: only the bare PC has a screen")
    if pc is not None and mode != "native":
        raise UsageError("--pc needs --native: the other modes boot on the i386 PC")
    if str(json_path) == STDOUT:
        raise UsageError("--json -: standard output is the guest's serial line; name a "
                         "file (or /dev/stderr)")
    check_disks(disks, snapshot)
    check_vcpus(vcpus, Mode(mode) if mode else Mode.AUTO)
    check_output_path(screen_path)
    check_output_path(json_path)
    check_output_path(xen_console_path)
    with _xen_console(xen_console_path) as xen_console:
        result = _run(image, RunOptions(
            mode=Mode(mode) if mode else Mode.AUTO, max_insns=max_insns, timeout=timeout,
            ram_size=memory << 20, cmdline=cmdline.encode(), disks=disks,
            snapshot=snapshot, input_data=_serial_input(input_file), modules=modules,
            trace=_trace_printer() if trace else None,
            trace_interrupts=_trace_printer() if trace_int else None,
            keys=keys, host_tsc=host_tsc, xen_console=xen_console, pc=pc,
            profile=profile, vcpus=vcpus))
    if screen_path is not None:
        from pvtool.image.writer import write_atomically

        write_atomically(screen_path, result.screen.text().encode())
    if json_path is not None:
        write_json(json_path, result.to_dict())
    if not quiet:
        run_view.render(result, console.stderr)
    if result.profile is not None:  # asked for, so shown even with --quiet
        run_view.render_profile(result.profile.to_dict(), result.mode.value, console.stderr)
    raise SystemExit(_run_status(result.stop))


def _trace_printer():
    """One dim line on stderr per traced event (markup off: a line may hold brackets)."""
    return lambda line: console.stderr.print(line, style="dim", markup=False,
                                             highlight=False, soft_wrap=True)


def _serial_input(path: Path | None) -> bytes:
    """What the UART will receive: the --input file, or piped standard input."""
    if path is not None:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise InputMissingError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if sys.stdin is None or sys.stdin.isatty():
        return b""
    return sys.stdin.buffer.read()


def _run(image: Path, options):
    from pvtool.run import run_image

    result = run_image(image, options, _line_writer(sys.stdout.buffer))
    sys.stdout.flush()
    return result


@contextmanager
def _xen_console(path: Path | None):
    """Where console_io's bytes go: stderr, as a Xen host's serial line shows them
    beside `xl console`'s ring, or the --xen-console file."""
    if path is None:
        yield _line_writer(sys.stderr.buffer)
        return
    with open(path, "wb") as out:
        yield _line_writer(out)


def _line_writer(out):
    """Write guest bytes to OUT, flushed at each line's end."""
    def write(data: bytes) -> None:
        out.write(data)
        if b"\n" in data:
            out.flush()

    return write


def _run_status(stop) -> int:
    """The guest's own code when it chose to stop; otherwise pvtool's status for why."""
    from pvtool.machine.stop import StopKind

    if stop.kind is StopKind.GUEST_EXIT:
        return stop.code & 0xFF
    if stop.kind is StopKind.SHUTDOWN and stop.code in (0, 1, 2):  # poweroff, reboot, suspend
        return 0
    if stop.kind is StopKind.RESET:  # as QEMU with -no-reboot, which exits with 0
        return 0
    error = {StopKind.INSN_LIMIT: GuestLimitError, StopKind.TIMEOUT: GuestLimitError,
             StopKind.HALTED: GuestHaltedError}.get(stop.kind, GuestFault)
    console.error(stop.describe())
    return error.exit_status


@cli.command(epilog="""\b
Examples:
  pvtool diffstat build/hello.pv.diff
  diff -ruN old new | pvtool diffstat - --baseline old --json port.json
  pvtool diffstat build/guests/hello.elf build/hello.pv.elf
  pvtool diffstat patches/minikern-xen --baseline guests \\
      --versus build/minikern.pv.diff""")
@debug_option()
@click.argument("inputs", nargs=-1, required=True, type=EXISTING_FILE,
                metavar="DIFF... | - | SERIES | PATCH_SET | ORIG.elf PATCHED.elf")
@click.option("--baseline", "baseline_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="The tree a source diff applies to (checked), or that a patch set "
                   "ports: its size is the baseline of the share.")
@click.option("--sloc", is_flag=True,
              help="Size the baseline in code lines of C, assembly and Python (not blank, "
                   "not only comment).")
@click.option("--category", "categories", multiple=True, metavar="NAME=GLOB",
              help="Put files matching GLOB (in a listing diff: functions) in category "
                   "NAME (Table 2's, an alias: arch, net, block, hypervisor, or your "
                   "own). Repeatable; the first match wins.")
@click.option("--automatic", multiple=True, metavar="GLOB",
              help="Files matching GLOB are generated, not hand-written. Repeatable.")
@click.option("--patch-set", default=None, metavar="NAME|DIR",
              help="With two images: the patch set that names the glue (default xen32).")
@click.option("--versus", "versus_paths", type=EXISTING_FILE, metavar="DIFF", multiple=True,
              help="Another port of the same kernel, measured beside it (e.g. the listing "
                   "diff `pvtool patch` wrote). Repeatable: a column each.")
@json_option("the figures")
def diffstat(inputs: tuple[Path, ...], baseline_dir: Path | None, sloc: bool,
             categories: tuple[str, ...], automatic: tuple[str, ...],
             patch_set: str | None, versus_paths: tuple[Path, ...],
             json_path: Path | None) -> None:
    """Measure how invasive a port is, as the Xen paper's Table 2 did: lines modified or
    added, by category, beside Xen's Linux and Windows XP ports.

    The input is a listing diff from `pvtool patch`, any unified diff (with --baseline
    DIR, the tree it applies to; `-` reads it from standard input), a series of diffs
    (several, or a folder of *.diff applied in name order, with its diffstat.toml), a
    patch set folder (patches/NAME), or two images, ORIG.elf and PATCHED.elf, whose
    listing diff is made in memory. Counts follow `diffstat -m`.
    """
    from pvtool.diffstat.port import measure_port
    from pvtool.views import diffstat_view

    check_output_path(json_path)
    port = measure_port(inputs, baseline_dir, sloc, categories, automatic, patch_set)
    versus = [measure_port((path,)) for path in versus_paths]
    if json_path is not None:
        data = port.to_dict()
        if versus:  # the first as "versus", as with one; every one in "versus_all"
            data["versus"] = versus[0].to_dict()
            data["versus_all"] = [other.to_dict() for other in versus]
        write_json(json_path, data)
    if str(json_path) != STDOUT:
        diffstat_view.render_port(port, console.stdout, versus)


@cli.command(epilog="""\b
Examples:
  pvtool bench --repeat 1 build/guests/hello.elf
  pvtool bench --json bench.json --plot bench.png build/guests/minikern.elf""")
@debug_option()
@click.argument("images", nargs=-1, type=EXISTING_FILE)
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True,
              metavar="N", help="Runs of each guest in each mode (the median is shown).")
@json_option("every figure")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False),
              metavar="FILE.png", help="Draw a bar chart (needs pvtool[plot]: matplotlib).")
@click.option("--patch-only", "patch_only", type=EXISTING_FILE, multiple=True,
              metavar="IMAGE", help="Also measure the patcher on IMAGE, without running "
              "it (a large kernel, e.g. build/linux/vmlinux from `make linux`). Repeatable.")
@click.option("--disk-sectors", type=click.IntRange(min=0), default=DISK_SECTORS,
              show_default=True, metavar="N",
              help="The disk rows: minikern reads and writes N sectors and flushes, over "
                   "ATA (native, trap, automatic PV) and blkfront (minikern-xen); 0 leaves "
                   "them out.")
def bench(images: tuple[Path, ...], repeat: int, json_path: Path | None,
          plot_path: Path | None, patch_only: tuple[Path, ...], disk_sectors: int) -> None:
    """Run each IMAGE natively, paravirtualized (patched on the fly) and trap-and-emulated
    (when available), against limits measured in the same run: raw Unicorn speed, an
    empty hook, a null hypercall, peak memory; and the patcher's speed and peak memory
    on each. Default IMAGEs: build/guests/minikern.elf and hello.elf.

    \b
    The tables, in order:
    - Guest workloads: each guest's run-loop wall time in each mode, its ratio
      to native, instructions and exits.
    - pvtool native vs QEMU: the same kernel on qemu-system-i386 or -x86_64,
      with QEMU's start-up timed apart, and whether both printed the same bytes.
    - Per-operation cost (a guest printing nanobench lines): rdtsc cycles an
      operation in each mode, its factor to native and, under PV, its cost in
      null hypercalls of the guest's width.
    - Exits per operation: each operation run alone, 100 and 200 times,
      profiled: the exits it takes by kind (hypercalls by name) and their host
      us, beside the whole operation's us by its own rdtsc.
    - Exits by kind: one profiled run of each guest in each mode; the count and
      mean host us of each kind of exit and of each hypercall.
    - Disk I/O (--disk-sectors): minikern's sectors a second and exits a sector
      over ATA and over the hand port's blkfront.
    - Limits: raw Unicorn, the empty hook and null hypercall of each width, the
      least a hypercall costs, the host's TSC rate, peak memory.
    - The patcher: pvtool patch's time, rate, memory and Table 2 row.
    - Issue 17's goals: each goal's ratio from this run's figures, its target
      and whether it is met, or why it was not measured.

    On a busy machine read the ratios, not the times: each is taken within this
    one run (a PV operation against null hypercalls timed around its own run, a
    hypercall against the hook timed just before it), so the machine's load
    weighs on both sides alike. --repeat 1 is one run of each."""
    from pvtool.bench.command import run_bench

    to_stdout = str(json_path) == STDOUT
    data = run_bench(images, repeat, None if to_stdout else json_path, plot_path, patch_only,
                     disk_sectors, tables=not to_stdout)
    if to_stdout:
        write_json(json_path, data)


def main() -> None:
    try:  # a signal from the moment install() sets a handler ends in one line
        interrupts.install()
        cli(prog_name="pvtool")
    except KeyboardInterrupt as exc:  # landed before click's own handling began
        sys.exit(interrupted(exc))


if __name__ == "__main__":
    sys.exit(main())
