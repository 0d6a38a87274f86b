"""The one exception family of pvtool.

Every failure pvtool itself detects is a PvtoolError subclass: its message is the one
line the CLI prints and its exit_status is the documented status (README, "Exit
status"). A guest's own exit code never goes through here: it is the run's result.
pvtool's statuses sit in 64-79 (as sysexits.h) so the bundled guests, which exit with
small codes, are never confused with them. None is 77, which automake's test harness
(and the TAP drivers that follow it) reads as "skipped": a crashed guest must never
count as a skipped test.
"""


class PvtoolError(Exception):
    """A failure with a message for people and an exit status."""

    exit_status = 70  # EX_SOFTWARE: something pvtool should have handled

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(PvtoolError):
    """The command line asks for something that cannot be done."""

    exit_status = 64  # EX_USAGE


class InputMissingError(PvtoolError):
    """An input file does not exist or cannot be read."""

    exit_status = 66  # EX_NOINPUT


class ImageError(PvtoolError):
    """An image that is not an ELF, or is corrupt or truncated."""

    exit_status = 65  # EX_DATAERR


class UnsupportedImageError(ImageError):
    """A well-formed image that this command cannot take (wrong architecture, no
    Multiboot header, no Xen notes)."""

    exit_status = 69  # EX_UNAVAILABLE


class OutputError(PvtoolError):
    """An output file cannot be written (or would overwrite the input)."""

    exit_status = 73  # EX_CANTCREAT


class PatchError(PvtoolError):
    """The patcher could not produce a correct image; nothing was written."""

    exit_status = 76


class GuestFault(PvtoolError):
    """The guest stopped in a way no real machine survives (triple fault, domain
    crash, a fault the emulator could not deliver)."""

    # EX_OSERR: the guest's operating system failed. Not 77, automake's "skipped".
    exit_status = 71


class GuestLimitError(PvtoolError):
    """The guest ran past --max-insns or --timeout."""

    exit_status = 78


class GuestHaltedError(PvtoolError):
    """The guest halted (or blocked) with nothing left that could ever wake it."""

    exit_status = 79


def exit_statuses() -> list[tuple[int, str]]:
    """pvtool's own statuses and what each means (the first paragraph of its class's
    docstring), lowest first: the table `pvtool --help` prints."""
    documented = (UsageError, ImageError, InputMissingError, UnsupportedImageError,
                  OutputError, PatchError, GuestFault, GuestLimitError, GuestHaltedError)
    return sorted((cls.exit_status, " ".join(cls.__doc__.split("\n\n")[0].split()))
                  for cls in documented)
