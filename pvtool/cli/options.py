"""Options more than one command takes, and how their outputs are written: the one
--json rule (FILE, or `-` for standard output), outputs checked before the work, and
the run modes that exclude each other."""

import json
import sys
from pathlib import Path

import click

from pvtool.errors import OutputError

# Paths are checked by the jobs themselves, so that a missing file or a directory gets
# pvtool's one-line error and documented status (66, 73), not click's usage text.
EXISTING_FILE = click.Path(path_type=Path)
STDOUT = "-"  # --json -: the document on standard output


def json_option(what: str, stdout_ok: bool = True):
    """--json FILE, the one rule of every command: the machine-readable result goes to
    FILE (`-`: standard output, where the human view is then left out)."""
    where = " (- for standard output)" if stdout_ok else ""
    return click.option("--json", "json_path", type=click.Path(path_type=Path),
                        metavar="FILE", help=f"Write {what} to FILE as JSON{where}.")


def write_json(target: Path, data: object) -> None:
    """`-` is standard output; an existing file that is not a regular one (a pipe,
    /dev/stderr) is written straight through; any other path gets the whole document
    or is left as it was."""
    from pvtool.image.writer import write_atomically

    text = json.dumps(data, indent=2) + "\n"
    if str(target) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
    elif target.exists() and not target.is_file() and not target.is_dir():
        try:
            target.write_text(text)
        except OSError as exc:
            raise OutputError(f"{target}: cannot write: {exc.strerror or exc}") from None
    else:
        write_atomically(target, text.encode())


def check_output_path(target: Path | None) -> None:
    """Refuse an output path that cannot be written (a directory, a missing folder)
    before the work, not after it."""
    from pvtool.image.writer import check_output_file

    if target is None or str(target) == STDOUT:
        return
    if target.is_dir() or not target.exists():  # an existing file is overwritten
        check_output_file(target)


def _one_mode(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """--native, --pv and --trap each set the run's `mode`; two of them are a usage
    error naming both (not the last one silently winning)."""
    chosen = ctx.params.setdefault("mode", None)
    if not value:
        return
    if chosen is not None and chosen != param.name:
        raise click.UsageError(f"--{chosen} and --{param.name} exclude each other: "
                               "choose one mode", ctx)
    ctx.params["mode"] = param.name


def mode_option(name: str, help: str):
    return click.option(f"--{name}", is_flag=True, expose_value=False, callback=_one_mode,
                        help=help)
