"""Typed text as the key events a PC keyboard sends, in scan code set 1 (what the
8042 hands the CPU with translation on): the make code when a key goes down, the
same code with bit 7 set when it comes up (IBM PC AT Technical Reference, keyboard
scan codes; a US layout).

A character is typed as QEMU's monitor command `sendkey` types it: `sendkey a` is
a's make then its break, and `sendkey shift-a` is shift's make, a's make, a's break,
shift's break. So `--keys "Hi\\n"` and `sendkey shift-h`, `sendkey i`, `sendkey ret`
send the same bytes. In the text, `\\n` is Enter, `\\e` Escape, `\\t` Tab, `\\b`
Backspace and `\\\\` a backslash.
"""

from pvtool.errors import UsageError

BREAK = 0x80
SHIFT = 0x2A
# QEMU's key name (qapi QKeyCode), the key's set-1 make code, and the characters it
# types without and with shift ("" for none). Letters are added below.
KEYS = (
    ("esc", 0x01, "\x1b", ""), ("1", 0x02, "1", "!"), ("2", 0x03, "2", "@"),
    ("3", 0x04, "3", "#"), ("4", 0x05, "4", "$"), ("5", 0x06, "5", "%"),
    ("6", 0x07, "6", "^"), ("7", 0x08, "7", "&"), ("8", 0x09, "8", "*"),
    ("9", 0x0A, "9", "("), ("0", 0x0B, "0", ")"), ("minus", 0x0C, "-", "_"),
    ("equal", 0x0D, "=", "+"), ("backspace", 0x0E, "\b", ""), ("tab", 0x0F, "\t", ""),
    ("bracket_left", 0x1A, "[", "{"), ("bracket_right", 0x1B, "]", "}"),
    ("ret", 0x1C, "\n", ""), ("semicolon", 0x27, ";", ":"), ("apostrophe", 0x28, "'", '"'),
    ("grave_accent", 0x29, "`", "~"), ("backslash", 0x2B, "\\", "|"),
    ("comma", 0x33, ",", "<"), ("dot", 0x34, ".", ">"), ("slash", 0x35, "/", "?"),
    ("spc", 0x39, " ", ""),
)
LETTER_ROWS = ((0x10, "qwertyuiop"), (0x1E, "asdfghjkl"), (0x2C, "zxcvbnm"))
LETTERS = tuple((letter, first + i, letter, letter.upper())
                for first, row in LETTER_ROWS for i, letter in enumerate(row))
KEY_CODES = {name: code for name, code, _, _ in KEYS + LETTERS}
# Each character typable: the key that types it, and whether shift is held.
TYPED_BY = {char: (name, shifted) for name, _, plain, upper in KEYS + LETTERS
            for char, shifted in ((plain, False), (upper, True)) if char}
ESCAPES = {"n": "\n", "e": "\x1b", "t": "\t", "b": "\b", "\\": "\\"}


def key_events(text: str) -> list[int]:
    """The scan codes typing TEXT sends, one per key going down or up."""
    events: list[int] = []
    for char in _unescape(text):
        key, shifted = _key_for(char)
        code = KEY_CODES[key]
        if shifted:
            events += [SHIFT, code, code | BREAK, SHIFT | BREAK]
        else:
            events += [code, code | BREAK]
    return events


def _key_for(char: str) -> tuple[str, bool]:
    if char not in TYPED_BY:
        raise UsageError(f"--keys: no key types {char!r} on a US keyboard")
    return TYPED_BY[char]


def _unescape(text: str) -> str:
    out, chars = [], iter(text)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            if escaped not in ESCAPES:
                raise UsageError(f"--keys: unknown escape \\{escaped} "
                                 "(\\n, \\e, \\t, \\b and \\\\ are known)")
            char = ESCAPES[escaped]
        out.append(char)
    return "".join(out)
