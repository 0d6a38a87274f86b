"""machine/profile.py: how a run's host time is cut into spans and shared out to the
exit kinds counted in them. A fake clock stands in for perf_counter_ns, so every
figure is exact."""

import pytest

from pvtool.machine import profile as profile_module
from pvtool.machine.exits import Exit
from pvtool.machine.profile import RUN_LOOP, Profile


class FakeClock:
    def __init__(self):
        self.now = 1_000

    def __call__(self) -> int:
        return self.now

    def tick(self, ns: int) -> None:
        self.now += ns


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(profile_module, "perf_counter_ns", fake)
    return fake


def rows(profile: Profile) -> dict[str, tuple[int, int]]:
    return {kind: (row.count, row.ns) for kind, row in profile.kinds.items()}


def test_a_hook_that_counts_one_exit_is_that_exit(clock):
    profile = Profile()
    profile.start()

    def on_port():
        clock.tick(300)
        profile.exits[Exit.IO] += 1
        clock.tick(200)

    hook = profile.timed(on_port, "port hook")
    profile.emulate(lambda: (clock.tick(1_000), hook(), clock.tick(500)))
    clock.tick(50)
    profile.finish()
    assert rows(profile)["io"] == (1, 500)  # the time before its count is its own
    assert profile.emulator_ns == 1_500
    assert profile.python_ns == 550  # the hook and the run loop's 50 ns after the slice
    assert profile.wall_ns == 2_050
    assert dict(profile.exits) == {Exit.IO: 1}


def test_a_span_with_two_kinds_is_cut_at_the_second_count(clock):
    profile = Profile()
    profile.start()

    def on_intr():
        profile.exits[Exit.HYPERCALL] += 1
        clock.tick(700)
        profile.exits[Exit.UPCALL] += 1
        clock.tick(400)

    profile.emulate(lambda: profile.timed(on_intr, "interrupt hook")())
    profile.finish()
    assert rows(profile)["hypercall"] == (1, 700)
    assert rows(profile)["upcall"] == (1, 400)


def test_a_hook_that_counts_nothing_is_its_own_row_and_no_exit(clock):
    profile = Profile()
    profile.start()
    hook = profile.timed(lambda: clock.tick(250), "rdtsc")
    profile.emulate(lambda: (hook(), hook()))
    profile.finish()
    assert rows(profile)["rdtsc"] == (2, 500)
    kinds = {row["kind"]: row for row in profile.to_dict()["kinds"]}
    assert kinds["rdtsc"]["exit"] is False
    assert kinds["rdtsc"]["mean_us"] == 0.25


def test_the_run_loop_keeps_its_time_before_an_exit_it_counts(clock):
    profile = Profile()
    profile.start()
    clock.tick(100)  # timers moved on
    profile.exits[Exit.IRQ] += 1  # an interrupt delivered between slices
    clock.tick(900)
    profile.emulate(lambda: clock.tick(2_000))
    profile.finish()
    assert rows(profile)["irq"] == (1, 900)
    assert rows(profile)[RUN_LOOP] == (2, 100)  # two spans between slices: before, after


def test_nested_hooks_are_timed_once_by_the_outer(clock):
    profile = Profile()
    profile.start()

    def on_mmio():
        profile.exits[Exit.MMIO] += 1
        clock.tick(100)

    inner = profile.timed(on_mmio, "mmio hook")

    def on_intr():
        profile.exits[Exit.EXCEPTION] += 1
        clock.tick(300)
        inner()

    profile.emulate(lambda: profile.timed(on_intr, "interrupt hook")())
    profile.finish()
    assert rows(profile)["exception"] == (1, 300)
    assert rows(profile)["mmio"] == (1, 100)
    assert profile.hooks_ns == 400


def test_counts_made_before_the_run_loop_are_kept_without_time(clock):
    profile = Profile()
    profile.exits[Exit.IO] += 1  # the boot wrote a port
    clock.tick(5_000)
    profile.start()
    profile.emulate(lambda: clock.tick(10))
    profile.finish()
    assert rows(profile)["io"] == (1, 0)
    assert profile.wall_ns == 10


def test_shares_sum_to_one(clock):
    profile = Profile()
    profile.start()

    def on_port():
        profile.exits[Exit.IO] += 1
        clock.tick(321)

    profile.emulate(lambda: (clock.tick(777), profile.timed(on_port, "port hook")()))
    clock.tick(13)
    profile.finish()
    data = profile.to_dict()
    assert data["emulator_share"] + data["python_share"] == pytest.approx(1)
    assert data["emulator_share"] + sum(row["share"] for row in data["kinds"]) \
        == pytest.approx(1)


def test_a_hypercall_exit_is_also_its_first_labels(clock):
    """The domain's count by number labels the exit it falls in; a multicall's
    entries, counted inside its exit, leave it the multicall's."""
    profile = Profile()
    calls = profile.labels(Exit.HYPERCALL, {13: "multicall", 1: "mmu_update"}.get)
    profile.start()

    def on_intr(number: int, entries: int):
        clock.tick(100)  # the registers read: before the count, still this exit's
        profile.exits[Exit.HYPERCALL] += 1
        calls[number] += 1
        for _ in range(entries):
            clock.tick(50)
            calls[1] += 1
        clock.tick(200)
        profile.exits[Exit.UPCALL] += 1  # an event delivered on the way back
        clock.tick(30)

    hook = profile.timed(on_intr, "interrupt hook")
    profile.emulate(lambda: (hook(13, 2), hook(1, 0), hook(1, 0)))
    profile.finish()
    assert rows(profile)["hypercall"] == (3, 400 + 300 + 300)
    data = profile.to_dict()
    assert data["labels"] == [  # costliest first
        {"kind": "hypercall", "name": "mmu_update", "count": 2, "total_us": 0.6,
         "mean_us": 0.3},
        {"kind": "hypercall", "name": "multicall", "count": 1, "total_us": 0.4,
         "mean_us": 0.4}]
    assert dict(calls) == {13: 1, 1: 4}  # the counts themselves are every call's
    assert profile.records() == [
        ("hypercall", "multicall", 400), ("upcall", None, 30),
        ("hypercall", "mmu_update", 300), ("upcall", None, 30),
        ("hypercall", "mmu_update", 300), ("upcall", None, 30)]


def test_the_records_are_every_exit_in_order_with_the_kinds_times(clock):
    profile = Profile()
    profile.exits[Exit.IO] += 1  # the boot's: a record of no time
    profile.start()
    clock.tick(70)
    profile.exits[Exit.IRQ] += 1  # between slices: the run loop's time before it stays
    clock.tick(20)

    def on_port():
        clock.tick(40)
        profile.exits[Exit.IO] += 1
        clock.tick(5)

    profile.emulate(lambda: (clock.tick(900), profile.timed(on_port, "port hook")(),
                             profile.timed(lambda: clock.tick(8), "rdtsc")()))
    profile.finish()
    records = profile.records()
    assert records == [("io", None, 0), ("irq", None, 20), ("io", None, 45)]
    for kind, row in profile.kinds.items():
        if kind not in (RUN_LOOP, "rdtsc"):  # not exits: no record
            assert row.ns == sum(r.ns for r in records if r.kind == kind), kind
            assert row.count == sum(r.kind == kind for r in records), kind
    assert profile.to_dict()["labels"] == []
