"""What CPUID answers on the PCs native mode presents: QEMU 7.2's default CPUs under
TCG, "qemu32" for qemu-system-i386 (as guests/pcprobe measured it) and "qemu64" for
qemu-system-x86_64 (pcprobe, and tests/machine/test_cpuid64.py's probe of every
subleaf). The leaves are built from their layouts in the Intel SDM, volume 2A,
"CPUID", and AMD's APM volume 3, appendix E.

Unicorn's own CPU answers as a recent Intel core would (leaf 0's maximum 0xD, AVX,
its own brand string), so native mode hooks the instruction and answers from these
tables instead (Machine.present_cpuid); PV and trap-and-emulate mode keep Unicorn's.
The vendor also decides what faults: on AMD's qemu64, sysenter and sysexit in 64-bit
code are #UD, so the native 64-bit PC runs Unicorn's qemu64 CPU as well (Unicorn
then sends sysexit to its invalid-instruction hook, measured).
The firmware's MP table and SMBIOS copy leaf 1's signature and features.

A leaf past the maximum of its range answers as the highest basic leaf does, with the
same ECX, as QEMU's cpu_x86_cpuid does; 0x40000000-0x40000001 are QEMU's hypervisor
leaves (TCG's signature).

Departures: leaves from 0xC0000000 answer zeros (qemu64 measured, qemu32 not).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from unicorn.x86_const import UC_CPU_X86_QEMU64

BRAND = "QEMU Virtual CPU version 2.5+"
HYPERVISOR_SIGNATURE = "TCGTCGTCGTCG"
CLFLUSH_LINE_QWORDS = 8  # CPUID.1:EBX[15:8]: 64-byte lines
MAX_HYPERVISOR = 0x40000001
HYPERVISOR_BASE, EXTENDED_BASE, CENTAUR_BASE = 0x40000000, 0x80000000, 0xC0000000

# CPUID.1:EDX and ECX feature bits (SDM, "Feature Information").
EDX_FEATURES = {"fpu": 0, "de": 2, "pse": 3, "tsc": 4, "msr": 5, "pae": 6, "mce": 7,
                "cx8": 8, "apic": 9, "sep": 11, "mtrr": 12, "pge": 13, "mca": 14,
                "cmov": 15, "pat": 16, "pse36": 17, "clflush": 19, "mmx": 23, "fxsr": 24,
                "sse": 25, "sse2": 26}
ECX_FEATURES = {"sse3": 0, "cx16": 13, "hypervisor": 31}
# CPUID.80000001h:EDX and ECX (APM vol. 3, E.4.2): AMD repeats most of leaf 1's EDX.
# SEP's bit 11 is SYSCALL's there.
EXT_EDX_FEATURES = {**{name: bit for name, bit in EDX_FEATURES.items()
                       if bit < 18 and name != "sep"},
                    "syscall": 11, "nx": 20, "mmx": 23, "fxsr": 24, "lm": 29}
EXT_ECX_FEATURES = {"lahf_lm": 0, "svm": 2}

AMD = "AuthenticAMD"
AMD_HT_START, AMD_HT_END = 0xFD_0000_0000, 1 << 40  # AMD's HyperTransport window

Registers = tuple[int, int, int, int]  # EAX, EBX, ECX, EDX
ZERO: Registers = (0, 0, 0, 0)
Subleaves = Callable[[int], Registers]


@dataclass(frozen=True)
class CpuModel:
    """One of QEMU's CPU models: its leaves, and those whose answer depends on ECX."""

    name: str
    unicorn_model: int | None  # Unicorn's CPU of the same vendor (None: Unicorn's default)
    max_basic: int
    max_extended: int
    leaves: dict[int, Registers]
    subleaves: dict[int, Subleaves] = field(default_factory=dict)

    def cpuid(self, leaf: int, subleaf: int) -> Registers:
        """EAX, EBX, ECX, EDX after CPUID with EAX = LEAF and ECX = SUBLEAF."""
        if leaf >= CENTAUR_BASE:
            return ZERO
        limit = (self.max_extended if leaf >= EXTENDED_BASE
                 else MAX_HYPERVISOR if leaf >= HYPERVISOR_BASE else self.max_basic)
        if leaf > limit:
            leaf = self.max_basic
        if leaf in self.subleaves:
            return self.subleaves[leaf](subleaf)
        return self.leaves.get(leaf, ZERO)

    @property
    def vendor(self) -> str:
        """Leaf 0's vendor string ("GenuineIntel", "AuthenticAMD")."""
        _, ebx, ecx, edx = self.leaves[0]
        return b"".join(r.to_bytes(4, "little") for r in (ebx, edx, ecx)).decode()

    @property
    def reserved_ranges(self) -> tuple[tuple[int, int], ...]:
        """(base, length) of what the PC reserves for this CPU in its memory map: with
        an AMD CPU, QEMU's PC reserves the HyperTransport window just below 1 TiB
        (hw/i386/pc.c, AMD_HT_START; measured with guests/probeboot on qemu64)."""
        return ((AMD_HT_START, AMD_HT_END - AMD_HT_START),) if self.vendor == AMD else ()

    @property
    def signature(self) -> int:
        """CPUID.1:EAX, as the MP table and SMBIOS copy it."""
        return self.leaves[1][0]

    @property
    def features(self) -> int:
        """CPUID.1:EDX, as the MP table and SMBIOS copy it."""
        return self.leaves[1][3]


def _text(text: str, registers: int) -> tuple[int, ...]:
    """TEXT in REGISTERS little-endian words, padded with zeros."""
    raw = text.encode().ljust(4 * registers, b"\0")
    return tuple(int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4))


def _bits(features: dict[str, int], *names: str) -> int:
    return sum(1 << features[name] for name in names or features)


def _bytes(values: tuple[int, ...]) -> int:
    return sum(value << 8 * i for i, value in enumerate(values))


def _signature(family: int, model: int, stepping: int) -> int:
    """CPUID.1:EAX: a model above 15 goes in the extended model field."""
    return (model >> 4) << 16 | family << 8 | (model & 0xF) << 4 | stepping


def _vendor_leaf(vendor: str, maximum: int) -> Registers:
    ebx, edx, ecx = _text(vendor, 3)  # "Genu" "ineI" "ntel" in EBX, EDX, ECX
    return maximum, ebx, ecx, edx


def _common_leaves(vendor: str, signature: int, max_basic: int, max_extended: int,
                   ) -> dict[int, Registers]:
    return {
        0: _vendor_leaf(vendor, max_basic),
        HYPERVISOR_BASE: (MAX_HYPERVISOR, *_text(HYPERVISOR_SIGNATURE, 3)),
        EXTENDED_BASE: _vendor_leaf(vendor, max_extended),
        **{EXTENDED_BASE + 2 + i: _text(BRAND, 12)[4 * i:4 * i + 4] for i in range(3)},
    }


# -- qemu32: an Intel family-6 CPU with no long mode ---------------------------------
# CPUID.2: one iteration (AL = 1), then descriptor bytes, lowest first.
LEAF2_DESCRIPTORS = {"eax": (0x01,), "ebx": (), "ecx": (0x4D,), "edx": (0x7D, 0x30, 0x2C)}
# CPUID.4's caches: (type, level, ways, sets, EDX); 64-byte lines, one partition.
DATA, INSTRUCTION, UNIFIED = 1, 2, 3
CACHES = ((DATA, 1, 8, 64, 0x1), (INSTRUCTION, 1, 8, 64, 0x1),
          (UNIFIED, 2, 16, 4096, 0x1), (UNIFIED, 3, 16, 16384, 0x6))
CACHE_LINE = 64
CACHE_SELF_INITIALIZING = 1 << 8


def _cache_leaf(subleaf: int) -> Registers:
    """CPUID.4: "Deterministic Cache Parameters Leaf"; zeros past the last cache."""
    if subleaf >= len(CACHES):
        return ZERO
    kind, level, ways, sets, edx = CACHES[subleaf]
    eax = CACHE_SELF_INITIALIZING | level << 5 | kind
    return eax, (ways - 1) << 22 | (CACHE_LINE - 1), sets - 1, edx


_QEMU32_SIGNATURE = _signature(6, 6, 3)
QEMU32 = CpuModel("qemu32", None, 4, 0x80000004, {
    **_common_leaves("GenuineIntel", _QEMU32_SIGNATURE, 4, 0x80000004),
    1: (_QEMU32_SIGNATURE, CLFLUSH_LINE_QWORDS << 8, _bits(ECX_FEATURES, "sse3", "hypervisor"),
        _bits(EDX_FEATURES, "fpu", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic",
              "sep", "pge", "cmov", "pat", "mmx", "fxsr", "sse", "sse2")),
    2: tuple(_bytes(LEAF2_DESCRIPTORS[reg]) for reg in ("eax", "ebx", "ecx", "edx")),
    EXTENDED_BASE + 1: (_QEMU32_SIGNATURE, 0, 0, 0),
}, {4: _cache_leaf})


# -- qemu64: an AMD family-15 CPU with long mode, SYSCALL and NX ----------------------
# Leaf 5 (MONITOR/MWAIT): ECX = EMX | IBE, whatever the subleaf; the sizes are zero.
MWAIT_EXTENSIONS = 0x3
# Leaf 0xB (extended topology) of a 1-CPU machine: an SMT level then a core level,
# one logical processor each, no shift; ECX[7:0] echoes the subleaf; EDX the x2APIC
# id. Past the two levels, a level of type 0.
TOPOLOGY_LEVELS = (1, 2)  # the level types: SMT, core
# The AMD cache and TLB leaves (APM vol. 3, E.4.4-E.4.5), as QEMU's TCG gives them:
# 0x80000005 L1 TLBs and 64 KiB 2-way L1 caches, 0x80000006 L2 TLBs, a 512 KiB
# 16-way L2 and a 16 MiB 16-way L3 with 64-byte lines.
L1_LEAF = (0x01FF01FF, 0x01FF01FF, 0x40020140, 0x40020140)
L2_LEAF = (0, 0x42004200, 0x02008140, 0x00808140)
ADDRESS_SIZES = 0x3028  # 0x80000008: 48 linear, 40 physical address bits
SVM_LEAF = (1, 0x10, 0, 0)  # 0x8000000A: SVM revision 1, 16 ASIDs


def _topology_leaf(subleaf: int) -> Registers:
    if subleaf < len(TOPOLOGY_LEVELS):
        return 0, 1, TOPOLOGY_LEVELS[subleaf] << 8 | subleaf, 0
    return 0, 0, subleaf & 0xFF, 0


_QEMU64_SIGNATURE = _signature(15, 0x6B, 1)
QEMU64 = CpuModel("qemu64", UC_CPU_X86_QEMU64, 0xD, 0x8000000A, {
    **_common_leaves(AMD, _QEMU64_SIGNATURE, 0xD, 0x8000000A),
    1: (_QEMU64_SIGNATURE, CLFLUSH_LINE_QWORDS << 8, _bits(ECX_FEATURES),
        _bits(EDX_FEATURES)),
    5: (0, 0, MWAIT_EXTENSIONS, 0),
    EXTENDED_BASE + 1: (_QEMU64_SIGNATURE, 0, _bits(EXT_ECX_FEATURES),
                        _bits(EXT_EDX_FEATURES)),
    EXTENDED_BASE + 5: L1_LEAF,
    EXTENDED_BASE + 6: L2_LEAF,
    EXTENDED_BASE + 8: (ADDRESS_SIZES, 0, 0, 0),
    EXTENDED_BASE + 0xA: SVM_LEAF,
}, {0xB: _topology_leaf})

CPU_MODELS = {32: QEMU32, 64: QEMU64}  # by the PC's width: qemu-system-i386, -x86_64
