"""What CPUID answers on the PC native mode presents: QEMU 7.2's default CPU for
qemu-system-i386, the "qemu32" model under TCG, as guests/pcprobe measured it. The
leaves are built from their layouts in the Intel SDM, volume 2A, "CPUID".

Unicorn's own CPU answers as a recent Intel core would (leaf 0's maximum 0xD, AVX,
its own brand string), so native mode hooks the instruction and answers from this
table instead (Machine.present_cpuid); PV and trap-and-emulate mode keep Unicorn's.

A leaf past the maximum of its range answers as the highest basic leaf does, with the
same ECX, as Intel CPUs and QEMU's cpu_x86_cpuid do; 0x40000000-0x40000001 are QEMU's
hypervisor leaves (TCG's signature).

Departures: leaves from 0xC0000000 answer zeros (not measured).
"""

VENDOR = "GenuineIntel"
BRAND = "QEMU Virtual CPU version 2.5+"
HYPERVISOR_SIGNATURE = "TCGTCGTCGTCG"
FAMILY, MODEL, STEPPING = 6, 6, 3
CLFLUSH_LINE_QWORDS = 8  # CPUID.1:EBX[15:8]: 64-byte lines
MAX_BASIC, MAX_HYPERVISOR, MAX_EXTENDED = 4, 0x40000001, 0x80000004
HYPERVISOR_BASE, EXTENDED_BASE, CENTAUR_BASE = 0x40000000, 0x80000000, 0xC0000000

# CPUID.1:EDX and ECX feature bits (SDM, "Feature Information").
EDX_FEATURES = {"fpu": 0, "de": 2, "pse": 3, "tsc": 4, "msr": 5, "pae": 6, "mce": 7,
                "cx8": 8, "apic": 9, "sep": 11, "pge": 13, "cmov": 15, "pat": 16,
                "mmx": 23, "fxsr": 24, "sse": 25, "sse2": 26}
ECX_FEATURES = {"sse3": 0, "hypervisor": 31}
# CPUID.2: one iteration (AL = 1), then descriptor bytes, lowest first.
LEAF2_DESCRIPTORS = {"eax": (0x01,), "ebx": (), "ecx": (0x4D,), "edx": (0x7D, 0x30, 0x2C)}
# CPUID.4's caches: (type, level, ways, sets, EDX); 64-byte lines, one partition.
DATA, INSTRUCTION, UNIFIED = 1, 2, 3
CACHES = ((DATA, 1, 8, 64, 0x1), (INSTRUCTION, 1, 8, 64, 0x1),
          (UNIFIED, 2, 16, 4096, 0x1), (UNIFIED, 3, 16, 16384, 0x6))
CACHE_LINE = 64
CACHE_SELF_INITIALIZING = 1 << 8

Registers = tuple[int, int, int, int]  # EAX, EBX, ECX, EDX
ZERO: Registers = (0, 0, 0, 0)


def cpuid(leaf: int, subleaf: int) -> Registers:
    """EAX, EBX, ECX, EDX after CPUID with EAX = LEAF and ECX = SUBLEAF."""
    if leaf >= CENTAUR_BASE:
        return ZERO
    limit = (MAX_EXTENDED if leaf >= EXTENDED_BASE
             else MAX_HYPERVISOR if leaf >= HYPERVISOR_BASE else MAX_BASIC)
    if leaf > limit:
        leaf = MAX_BASIC
    if leaf == 4:
        return _cache_leaf(subleaf)
    return _LEAVES.get(leaf, ZERO)


def _text(text: str, registers: int) -> tuple[int, ...]:
    """TEXT in REGISTERS little-endian words, padded with zeros."""
    raw = text.encode().ljust(4 * registers, b"\0")
    return tuple(int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4))


def _bits(features: dict[str, int]) -> int:
    return sum(1 << bit for bit in features.values())


def _bytes(values: tuple[int, ...]) -> int:
    return sum(value << 8 * i for i, value in enumerate(values))


def _cache_leaf(subleaf: int) -> Registers:
    """CPUID.4: "Deterministic Cache Parameters Leaf"; zeros past the last cache."""
    if subleaf >= len(CACHES):
        return ZERO
    kind, level, ways, sets, edx = CACHES[subleaf]
    eax = CACHE_SELF_INITIALIZING | level << 5 | kind
    return eax, (ways - 1) << 22 | (CACHE_LINE - 1), sets - 1, edx


def _vendor_leaf(maximum: int) -> Registers:
    ebx, edx, ecx = _text(VENDOR, 3)  # "Genu" "ineI" "ntel" in EBX, EDX, ECX
    return maximum, ebx, ecx, edx


_SIGNATURE = FAMILY << 8 | MODEL << 4 | STEPPING
_LEAVES: dict[int, Registers] = {
    0: _vendor_leaf(MAX_BASIC),
    1: (_SIGNATURE, CLFLUSH_LINE_QWORDS << 8, _bits(ECX_FEATURES), _bits(EDX_FEATURES)),
    2: tuple(_bytes(LEAF2_DESCRIPTORS[reg]) for reg in ("eax", "ebx", "ecx", "edx")),
    HYPERVISOR_BASE: (MAX_HYPERVISOR, *_text(HYPERVISOR_SIGNATURE, 3)),
    EXTENDED_BASE: _vendor_leaf(MAX_EXTENDED),
    EXTENDED_BASE + 1: (_SIGNATURE, 0, 0, 0),
    **{EXTENDED_BASE + 2 + i: _text(BRAND, 12)[4 * i:4 * i + 4] for i in range(3)},
}
