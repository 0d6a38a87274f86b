"""The command group's conduct: every failure ends in one line on stderr and its
documented status (pvtool's errors, click's usage errors, SIGINT and SIGTERM, a closed
pipe), the statuses listed in the help, and --debug before or after a command."""

import os
import signal
import sys
import traceback

import click

from pvtool import console, interrupts
from pvtool.errors import PvtoolError, UsageError, exit_statuses

INTERNAL_ERROR_STATUS = 70
CLOSED_PIPE_STATUS = 128 + signal.SIGPIPE  # 141: how a shell reports `yes | head -1`'s yes
DEBUG = "pvtool.debug"  # the context's meta key: --debug was given, before or after a command


class PvtoolGroup(click.Group):
    """Turns every PvtoolError, and click's usage errors, into one line on stderr and
    its exit status; lists the statuses in its help."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        """A signal that lands while click parses the command line ends as one that
        lands in the command (click alone would print "Aborted!" and exit with 1)."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # pvtool's own options or command name
            raise _usage_exit(exc) from None
        except KeyboardInterrupt as exc:
            raise click.exceptions.Exit(interrupted(exc)) from None
        except BrokenPipeError:  # the help, written to a pipe already closed
            raise click.exceptions.Exit(closed_pipe()) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a command's options or arguments
            raise _usage_exit(exc) from None
        except PvtoolError as exc:
            if ctx.meta.get(DEBUG):
                traceback.print_exc()
            console.error(exc.message)
            ctx.exit(exc.exit_status)
        except KeyboardInterrupt as exc:
            ctx.exit(interrupted(exc))
        except BrokenPipeError:
            ctx.exit(closed_pipe())
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # a bug in pvtool: say so in one line
            if ctx.meta.get(DEBUG):
                traceback.print_exc()
            console.error(f"internal error: {type(exc).__name__}: {exc} "
                          "(run with --debug for the traceback)")
            ctx.exit(INTERNAL_ERROR_STATUS)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The exit statuses, from the error classes that own them, and how to turn
        on shell completion."""
        super().format_epilog(ctx, formatter)
        with formatter.section("Exit status"):
            formatter.write_dl([
                ("CODE", "The guest wrote CODE to isa-debug-exit (QEMU exits with "
                         "2*CODE+1); 0 after a PV shutdown or a reset of the PC."),
                *[(str(status), meaning) for status, meaning in statuses()]])
        with formatter.section("Shell completion"):
            formatter.write_text("Add to ~/.bashrc: "
                                 'eval "$(_PVTOOL_COMPLETE=bash_source pvtool)"')
            formatter.write_text("zsh: _PVTOOL_COMPLETE=zsh_source, "
                                 "fish: _PVTOOL_COMPLETE=fish_source, the same way.")


def statuses() -> list[tuple[int, str]]:
    """Every status pvtool itself ends with, and what it means, in order."""
    return sorted([
        *exit_statuses(),
        (INTERNAL_ERROR_STATUS, "An internal error in pvtool (--debug shows the traceback)."),
        (CLOSED_PIPE_STATUS, "The reader of the output closed it (| head)."),
        (interrupts.INTERRUPTED_STATUS, "Interrupted (SIGINT)."),
        (interrupts.TERMINATED_STATUS, "Terminated (SIGTERM).")])


def interrupted(exc: KeyboardInterrupt) -> int:
    """SIGINT or SIGTERM (pvtool/interrupts.py): one line; the status, 130 or 143."""
    message, status = interrupts.ending(exc)
    console.error(message)
    return status


def closed_pipe() -> int:
    """The reader closed the pipe pvtool writes to (`| head -1`): end quietly, with the
    status a shell gives a program that SIGPIPE killed, as it does `cat`. Python ignores
    SIGPIPE, so a write raises EPIPE instead; pointing stdout and stderr at /dev/null
    keeps the flush at exit from failing again (Python's signal docs, "Note on
    SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        os.dup2(devnull, stream.fileno())
    os.close(devnull)
    return CLOSED_PIPE_STATUS


def _usage_exit(exc: click.UsageError) -> click.exceptions.Exit:
    """Click's usage error as pvtool's one line, with where to read more, and
    EX_USAGE: one status for every bad command line, pvtool's checks and click's."""
    where = exc.ctx.command_path if exc.ctx else "pvtool"
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        click.echo(exc.format_message(), err=True)  # a bare `pvtool`: the help
    else:
        message = " ".join(exc.format_message().split()).rstrip(".")
        if message[:2].istitle():  # click's capital, not an acronym's
            message = message[0].lower() + message[1:]
        console.error(f"{message} (see '{where} --help')")
    return click.exceptions.Exit(UsageError.exit_status)


def _note_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[DEBUG] = True  # meta is shared by the group's and the command's context


def debug_option(**envvar):
    """--debug, accepted before the command (with PVTOOL_DEBUG=1) and after it."""
    return click.option("--debug", is_flag=True, expose_value=False, callback=_note_debug,
                        help="Show the Python traceback of an error.", **envvar)
