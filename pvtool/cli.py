"""pvtool's command line: each command parses, calls one function, renders its result."""

import os
import sys
import traceback
from pathlib import Path

import click

from pvtool import console
from pvtool.errors import PvtoolError

EXISTING_FILE = click.Path(path_type=Path, dir_okay=False)
INTERNAL_ERROR_STATUS = 70
INTERRUPTED_STATUS = 130


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
        except KeyboardInterrupt:
            console.error("interrupted")
            ctx.exit(INTERRUPTED_STATUS)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # a bug in pvtool: say so in one line
            if debug:
                traceback.print_exc()
            console.error(f"internal error: {type(exc).__name__}: {exc} "
                          "(run with --debug for the traceback)")
            ctx.exit(INTERNAL_ERROR_STATUS)


@click.group(cls=PvtoolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.version_option(package_name="pvtool")
def cli(debug: bool) -> None:
    """Paravirtualize small x86 guest kernels and run them under a Python hypervisor."""


@cli.command()
@click.argument("diff", type=EXISTING_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def diffstat(diff: Path, as_json: bool) -> None:
    """Measure how invasive a port is: lines inserted, deleted and modified in DIFF.

    DIFF is a unified diff, such as the listing diff `pvtool patch` writes.
    """
    from pvtool import diffstat as job
    from pvtool.views import diffstat_view

    result = job.measure(diff)
    if as_json:
        console.print_json(result.to_dict())
    else:
        diffstat_view.render(result, console.stdout)


def main() -> None:
    cli(prog_name="pvtool")


if __name__ == "__main__":
    sys.exit(main())
