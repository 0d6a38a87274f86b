"""machine/keys.py: typed text as set-1 scan codes, in the order QEMU's `sendkey`
sends them (tests/e2e/test_cgacon.py compares what a guest receives on both)."""

import pytest

from pvtool.errors import UsageError
from pvtool.machine.keys import key_events

# Set-1 make codes from the IBM PC AT Technical Reference's table, written out here.
A, Z, ONE, SPACE, ENTER, ESC, SHIFT, SLASH = 0x1E, 0x2C, 0x02, 0x39, 0x1C, 0x01, 0x2A, 0x35


def test_a_key_is_its_make_code_then_the_same_with_bit_7():
    assert key_events("az") == [A, A | 0x80, Z, Z | 0x80]


def test_a_shifted_character_holds_shift_around_the_key_as_sendkey_shift_does():
    assert key_events("A") == [SHIFT, A, A | 0x80, SHIFT | 0x80]
    assert key_events("!") == [SHIFT, ONE, ONE | 0x80, SHIFT | 0x80]
    assert key_events("?") == [SHIFT, SLASH, SLASH | 0x80, SHIFT | 0x80]


def test_escapes_name_enter_escape_and_a_backslash():
    assert key_events(" \\n\\e") == [SPACE, SPACE | 0x80, ENTER, ENTER | 0x80, ESC, ESC | 0x80]
    assert key_events("\\\\") == [0x2B, 0xAB]


@pytest.mark.parametrize(("text", "says"), [("é", "no key types"), ("\\q", "unknown escape"),
                                            ("\\", "unknown escape")])
def test_what_no_key_types_is_a_usage_error(text, says):
    with pytest.raises(UsageError, match=says):
        key_events(text)
