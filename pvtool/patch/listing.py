"""Listings: one instruction a line, with its address and symbol, so that a unified
diff of the original and patched listings shows exactly what the port changed (and
`pvtool diffstat` can count it the way the Xen paper counted lines)."""

import difflib
from bisect import bisect_right

from pvtool.patch.discover import CodeMap
from pvtool.x86.isa import Undecodable, decode_all

BASELINE_HEADER = "# pvtool-baseline-lines: {}"


class Symbolizer:
    """`name+0x1c` for an address, from (address, name) pairs."""

    def __init__(self, symbols: list[tuple[int, str]]):
        pairs = sorted(symbols)
        self._addresses = [a for a, _ in pairs]
        self._names = [n for _, n in pairs]

    def __call__(self, address: int) -> str:
        i = bisect_right(self._addresses, address) - 1
        if i < 0:
            return "?"
        offset = address - self._addresses[i]
        return self._names[i] + (f"+{offset:#x}" if offset else "")


def line(address: int, symbolize: Symbolizer, text: str) -> str:
    return f"{address:08x} <{symbolize(address)}>: {text}"


def code_listing(code: CodeMap, symbolize: Symbolizer) -> list[str]:
    """The original code: every decoded instruction and every undecodable run."""
    items = [(i.address, f"{i.mnemonic} {i.op_str}".strip())
             for i in code.instructions_in(0, 1 << 32)]
    items += [(u.address, f"(bad) {u.data.hex()}") for u in code.undecodable]
    return [line(a, symbolize, t) for a, t in sorted(items)]


def decode_listing(data: bytes, address: int, symbolize: Symbolizer, mode: int) -> list[str]:
    """A linear listing of code pvtool wrote itself (glue, stubs, patched ranges)."""
    out = []
    for item in decode_all(data, address, mode):
        if isinstance(item, Undecodable):
            out.append(line(item.address, symbolize, f"(bad) {item.data.hex()}"))
        else:
            out.append(line(item.address, symbolize, f"{item.mnemonic} {item.op_str}".strip()))
    return out


def unified_diff(original: list[str], patched: list[str], from_name: str, to_name: str) -> str:
    header = BASELINE_HEADER.format(len(original))
    body = difflib.unified_diff(original, patched, fromfile=from_name, tofile=to_name,
                                lineterm="")
    return "\n".join([header, *body]) + "\n"
