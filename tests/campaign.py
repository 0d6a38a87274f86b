"""The figures of a fuzzing campaign (`make fuzz`): what the fuzz tests did and how
many invariant checks passed, added up across the tests of one pytest process and
printed at its end (tests/conftest.py)."""

import time


class Figures:
    started = time.perf_counter()
    hypercalls = 0  # hypercalls made with the hypervisor's invariants checked after each
    images = 0  # mutated images given to `pvtool run` and `pvtool patch`
    commands = 0  # pvtool commands run on them
    invariants = 0  # invariant checks passed (one check: every invariant of a test)


def summary() -> str:
    elapsed = time.perf_counter() - Figures.started
    return (f"fuzzing campaign: {Figures.hypercalls:,} hypercalls, {Figures.images:,} "
            f"mutated images ({Figures.commands:,} commands), {Figures.invariants:,} "
            f"invariant checks passed, in {elapsed:,.0f} s")
