"""pvtool's command line: each command parses, calls one function, renders its result."""

import os
import sys
import traceback
from pathlib import Path

import click

from pvtool import console, interrupts
from pvtool.errors import (
    GuestFault,
    GuestHaltedError,
    GuestLimitError,
    InputMissingError,
    PvtoolError,
    UsageError,
)

# Paths are checked by the jobs themselves, so that a missing file or a directory gets
# pvtool's one-line error and documented status (66, 73), not click's usage text.
EXISTING_FILE = click.Path(path_type=Path)
INTERNAL_ERROR_STATUS = 70


class PvtoolGroup(click.Group):
    """Turns every PvtoolError into one line on stderr and its exit status."""

    def invoke(self, ctx: click.Context):
        debug = bool(ctx.params.get("debug")) or bool(os.environ.get("PVTOOL_DEBUG"))
        try:
            return super().invoke(ctx)
        except PvtoolError as exc:
            if debug:
                traceback.print_exc()
            console.error(exc.message)
            ctx.exit(exc.exit_status)
        except KeyboardInterrupt as exc:
            ctx.exit(_interrupted(exc))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # a bug in pvtool: say so in one line
            if debug:
                traceback.print_exc()
            console.error(f"internal error: {type(exc).__name__}: {exc} "
                          "(run with --debug for the traceback)")
            ctx.exit(INTERNAL_ERROR_STATUS)

    def make_context(self, *args, **kwargs) -> click.Context:
        """A signal that lands while click parses the command line ends as one that
        lands in the command (click alone would print "Aborted!" and exit with 1)."""
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as exc:
            raise click.exceptions.Exit(_interrupted(exc)) from None


def _interrupted(exc: KeyboardInterrupt) -> int:
    """SIGINT or SIGTERM (pvtool/interrupts.py): one line; the status, 130 or 143."""
    message, status = interrupts.ending(exc)
    console.error(message)
    return status


@click.group(cls=PvtoolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.version_option(package_name="pvtool")
def cli(debug: bool) -> None:
    """Paravirtualize small x86 guest kernels and run them under a Python hypervisor."""


@cli.command()
@click.argument("image", type=EXISTING_FILE)
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="The patched image (default: IMAGE's name with .pv.elf). Its listing "
                   "diff and JSON report are written beside it (.diff, .json).")
@click.option("--patch-set", default="xen32", show_default=True,
              help="A patch set in patches/ (or a folder holding rules.toml and glue.asm).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--sites", is_flag=True, help="Also list every site, with why it is placed so.")
def patch(image: Path, output: Path | None, patch_set: str, as_json: bool,
          sites: bool) -> None:
    """Rewrite IMAGE's privileged and sensitive instructions into Xen PV stubs."""
    from pvtool.patch.pipeline import patch_image
    from pvtool.views import patch_view

    report = patch_image(image, output or image.with_suffix(".pv.elf"), patch_set)
    if as_json:
        console.print_json(report.to_dict())
    else:
        patch_view.render(report, console.stdout, sites)


@cli.command()
@click.argument("image", type=EXISTING_FILE)
@click.option("--native", "mode", flag_value="native",
              help="Boot IMAGE (a Multiboot kernel) on the emulated bare PC, in ring 0.")
@click.option("--pv", "mode", flag_value="pv",
              help="Boot IMAGE paravirtualized (the default for an image with Xen notes).")
@click.option("--trap", "mode", flag_value="trap",
              help="Boot IMAGE (an unpatched Multiboot kernel) in ring 1 under the "
                   "hypervisor, emulating each privileged instruction it traps on.")
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
@click.option("--json", "as_json", is_flag=True, help="The summary as JSON (on stderr).")
@click.option("--trace", is_flag=True, help="Print hypercalls on stderr as they happen.")
@click.option("--trace-int", is_flag=True,
              help="Print each interrupt and exception on stderr as it is delivered, as "
                   "QEMU's -d int does (in PV mode: bounces and event upcalls).")
@click.option("--keys", default="", metavar="TEXT",
              help="Type TEXT on the PS/2 keyboard (US layout), one key down or up every "
                   "0.1 s of virtual time; \\n is Enter, \\e Escape, \\t Tab, \\b "
                   "Backspace.")
@click.option("--screen", "screen_path", type=click.Path(path_type=Path, dir_okay=False),
              metavar="FILE", help="--native: write the text screen at the end to FILE "
                                   "(25 lines, trailing blanks trimmed, UTF-8).")
def run(image: Path, mode: str | None, max_insns: int | None, timeout: float | None,
        memory: int, cmdline: str, disks: tuple[Path, ...], snapshot: bool,
        input_file: Path | None, modules: tuple[Path, ...], quiet: bool, as_json: bool,
        trace: bool, trace_int: bool, keys: str, screen_path: Path | None) -> None:
    """Boot IMAGE and run it until it stops. The guest's serial output goes to stdout;
    pvtool exits with the guest's isa-debug-exit code (see README, "Exit status")."""
    from pvtool.machine.ata import MAX_DISKS
    from pvtool.run import Mode, RunOptions, run_image
    from pvtool.views import run_view

    if screen_path is not None and mode != "native":
        raise UsageError("--screen needs --native: only the bare PC has a screen")
    if len(disks) > MAX_DISKS:
        raise UsageError(f"--disk given {len(disks)} times: the PC has {MAX_DISKS} IDE places")
    options = RunOptions(
        mode=Mode(mode) if mode else Mode.AUTO, max_insns=max_insns, timeout=timeout,
        ram_size=memory << 20, cmdline=cmdline.encode(), disks=disks, snapshot=snapshot,
        input_data=_serial_input(input_file), modules=modules,
        trace=_trace_printer() if trace else None,
        trace_interrupts=_trace_printer() if trace_int else None,
        keys=keys)
    result = run_image(image, options, _guest_output())
    sys.stdout.flush()
    if screen_path is not None:
        from pvtool.image.writer import write_atomically

        write_atomically(screen_path, result.screen.text().encode())
    if as_json:
        console.stderr.print_json(data=result.to_dict())
    elif not quiet:
        run_view.render(result, console.stderr)
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


def _guest_output():
    out = sys.stdout.buffer

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


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=EXISTING_FILE,
                metavar="DIFF | PATCH_SET | ORIG.elf PATCHED.elf")
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
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def diffstat(inputs: tuple[Path, ...], baseline_dir: Path | None, sloc: bool,
             categories: tuple[str, ...], automatic: tuple[str, ...],
             patch_set: str | None, as_json: bool) -> None:
    """Measure how invasive a port is, as the Xen paper's Table 2 did: lines modified or
    added, by category, beside Xen's Linux and Windows XP ports.

    The input is a listing diff from `pvtool patch`, any unified diff (with --baseline
    DIR, the tree it applies to), a patch set folder (patches/NAME), or two images,
    ORIG.elf and PATCHED.elf, whose listing diff is made in memory. Counts follow
    `diffstat -m`.
    """
    from pvtool.diffstat.port import measure_port
    from pvtool.views import diffstat_view

    port = measure_port(inputs, baseline_dir, sloc, categories, automatic, patch_set)
    if as_json:
        console.print_json(port.to_dict())
    else:
        diffstat_view.render_port(port, console.stdout)


@cli.command()
@click.argument("images", nargs=-1, type=EXISTING_FILE)
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True,
              metavar="N", help="Runs of each guest in each mode (the median is shown).")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              metavar="FILE", help="Write every figure to FILE as JSON.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False),
              metavar="FILE.png", help="Draw a bar chart (needs pvtool[plot]: matplotlib).")
@click.option("--patch-only", "patch_only", type=EXISTING_FILE, multiple=True,
              metavar="IMAGE", help="Also measure the patcher on IMAGE, without running "
              "it (a large kernel, e.g. build/linux/vmlinux from `make linux`). Repeatable.")
def bench(images: tuple[Path, ...], repeat: int, json_path: Path | None,
          plot_path: Path | None, patch_only: tuple[Path, ...]) -> None:
    """Run each IMAGE natively, paravirtualized (patched on the fly) and trap-and-emulated
    (when available), against limits measured in the same run: raw Unicorn speed, an
    empty hook, a null hypercall, peak memory; and the patcher's speed and peak memory
    on each. Default IMAGEs: build/guests/*.elf."""
    from pvtool.bench.command import run_bench

    run_bench(images, repeat, json_path, plot_path, patch_only)


def main() -> None:
    interrupts.install()  # before any work: a signal from now on ends it cleanly
    try:
        cli(prog_name="pvtool")
    except KeyboardInterrupt as exc:  # landed before click's own handling began
        sys.exit(_interrupted(exc))


if __name__ == "__main__":
    sys.exit(main())
