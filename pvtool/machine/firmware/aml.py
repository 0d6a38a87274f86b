"""Just enough of ACPI Machine Language (ACPI 6.5, chapter 20, "AML Specification")
to write a small DSDT: names, scopes, devices, packages, integers and buffers.
"""

NAME_OP, SCOPE_OP, PACKAGE_OP, BUFFER_OP = 0x08, 0x10, 0x12, 0x11
ZERO_OP, ONE_OP, BYTE_PREFIX, WORD_PREFIX, DWORD_PREFIX = 0x00, 0x01, 0x0A, 0x0B, 0x0C
EXT_OP_PREFIX, DEVICE_OP = 0x5B, 0x82
ROOT_CHAR, NAME_SEG_LEN = b"\\", 4


def pkg_length(content: int) -> bytes:
    """A PkgLength (20.2.4) for CONTENT bytes: it counts its own bytes too. One byte
    holds up to 63; else the lead byte's top two bits say how many bytes follow, its
    low nibble the length's low four bits."""
    if content + 1 < 0x40:
        return bytes([content + 1])
    for extra in (1, 2, 3):
        total = content + 1 + extra
        if total < 1 << (4 + 8 * extra):
            return bytes([extra << 6 | total & 0xF]) + (total >> 4).to_bytes(extra, "little")
    raise ValueError(f"{content} bytes do not fit a PkgLength")


def name_string(path: str) -> bytes:
    """A root-relative or single-segment name: `\\_SB_` or `PCI0` (padded with _)."""
    root = path.startswith("\\")
    segment = path.lstrip("\\").encode().ljust(NAME_SEG_LEN, b"_")
    return (ROOT_CHAR if root else b"") + segment


def integer(value: int) -> bytes:
    """The shortest encoding of an integer constant (20.2.3)."""
    if value in (0, 1):
        return bytes([ZERO_OP if value == 0 else ONE_OP])
    for prefix, width in ((BYTE_PREFIX, 1), (WORD_PREFIX, 2), (DWORD_PREFIX, 4)):
        if value < 1 << (8 * width):
            return bytes([prefix]) + value.to_bytes(width, "little")
    raise ValueError(f"{value:#x} is wider than a DWordConst")


def eisa_id(text: str) -> int:
    """A compressed EISA ID, as ASL's EisaId() makes it: three letters in five bits
    each, then four hex digits, stored big-endian."""
    letters = sum((ord(c) - 0x40) << (10 - 5 * i) for i, c in enumerate(text[:3]))
    raw = letters.to_bytes(2, "big") + int(text[3:], 16).to_bytes(2, "big")
    return int.from_bytes(raw, "little")


def name(path: str, value: bytes) -> bytes:
    return bytes([NAME_OP]) + name_string(path) + value


def package(*elements: bytes) -> bytes:
    body = bytes([len(elements)]) + b"".join(elements)
    return bytes([PACKAGE_OP]) + pkg_length(len(body)) + body


def buffer(size: int) -> bytes:
    """A zero-filled buffer of SIZE bytes."""
    body = integer(size) + bytes(size)
    return bytes([BUFFER_OP]) + pkg_length(len(body)) + body


def scope(path: str, *terms: bytes) -> bytes:
    body = name_string(path) + b"".join(terms)
    return bytes([SCOPE_OP]) + pkg_length(len(body)) + body


def device(path: str, *terms: bytes) -> bytes:
    body = name_string(path) + b"".join(terms)
    return bytes([EXT_OP_PREFIX, DEVICE_OP]) + pkg_length(len(body)) + body
