"""Watches: hooks on a few addresses, armed and disarmed while the guest runs, and the
work they leave for the end of a slice.

A hook bounded to one address costs nothing anywhere else (docs/ABI.md measures it),
so a watch is how pvtool sees a single instruction or a few bytes: the `hlt`s the
loader finds, trap-and-emulate's sites, a guest's debug registers (hv/breakpoints.py),
an NMI handler's iret. What Unicorn does not allow from inside a hook happens after
the slice (after_slice, which Machine.finish_slice calls): a hook is removed there,
translated code is dropped so that a new hook is seen, and a store a memory watch saw
is undone and its instruction run again alone (UNICORN.md: stopped from a memory
hook, Unicorn leaves the instruction half done).
"""

from collections.abc import Callable, Iterable

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MEM_WRITE, Uc

from pvtool.interrupts import UNTIL_NEVER, emulate
from pvtool.machine.cpu import Cpu
from pvtool.machine.memory import GuestMemory
from pvtool.x86.isa import OPERAND_SIZE_PREFIX, REX_W

IRET = 0xCF
MAX_ACCESS = 8  # bytes of the widest data access a watch must catch (a movq, a cmpxchg8b)


class Watches:
    """The machine's watches. HOOK wraps a callback as every hook of the machine's is
    wrapped (Machine.hook: timed for --profile); FAIL ends the slice with a hook's
    error (Machine._fail)."""

    def __init__(self, uc: Uc, cpu: Cpu, memory: GuestMemory,
                 hook: Callable[[Callable, str], Callable],
                 fail: Callable[[BaseException], None]):
        self._uc, self._cpu, self._memory = uc, cpu, memory
        self._hook, self._fail = hook, fail
        self.in_slice = False  # between start_slice and emulation_returned
        self.stopping_soon = False  # stop_at_next_instruction's hook is armed
        self.hlt_executed = False  # a watched hlt ran in this slice
        self._spent: list[int] = []  # hooks to remove once the slice has ended
        self._changed = False  # a watch came or went: translations are dropped
        self._undo: list[tuple[int, bytes]] = []  # what watched stores overwrote
        self._replay = self._replaying = False
        self._after_slice: list[Callable[[], None]] = []  # end_slice_then's

    # -- for the life of the machine ----------------------------------------------------
    def code_always(self, addresses: Iterable[int], callback: Callable[[int], None]) -> None:
        """Call CALLBACK(address) before the instruction at each of ADDRESSES runs, for
        as long as the machine lives (installed before the first slice)."""
        def on_code(uc: Uc, address: int, size: int, _) -> None:
            callback(address)

        for address in addresses:
            self._uc.hook_add(UC_HOOK_CODE, self._hook(on_code, "instruction hook"), None,
                              address, address)

    def halts(self, addresses: Iterable[int]) -> None:
        """Watch the `hlt` instructions at ADDRESSES: at CPL 0 Unicorn returns from
        emu_start after a hlt with no hook called (UNICORN.md), and nothing else tells
        that apart from a slice that simply ran out (hlt_executed)."""
        self.code_always(addresses, self._on_hlt)

    def _on_hlt(self, address: int) -> None:
        self.hlt_executed = True

    # -- armed and disarmed while the guest runs ----------------------------------------
    def code(self, address: int, callback: Callable[[int], None]) -> int:
        """Call CALLBACK(address) before the instruction at linear ADDRESS runs, until
        remove(handle)."""
        def on_code(uc: Uc, at: int, size: int, _) -> None:
            try:
                callback(at)
            except BaseException as exc:
                self._fail(exc)

        return self._added(self._uc.hook_add(UC_HOOK_CODE, self._hook(on_code, "watch hook"),
                                             None, address, address))

    def memory(self, paddr: int, size: int, callback: Callable[[], None], *,
                      reads: bool) -> int:
        """Call CALLBACK() when a guest store (and a load too, with READS) touches the
        SIZE physical bytes at PADDR, until remove(handle). Unicorn bounds a memory
        hook by the access's first byte, so the hook starts 7 bytes lower and the
        overlap is checked here. What a store overwrites is kept, for end_slice_then."""
        def on_access(uc: Uc, access: int, address: int, length: int, value: int, _) -> None:
            if self._replaying or address + length <= paddr:
                return
            try:
                if access == UC_MEM_WRITE:
                    self._undo.append((address, bytes(uc.mem_read(address, length))))
                callback()
            except BaseException as exc:
                self._fail(exc)

        kinds = UC_HOOK_MEM_WRITE | (UC_HOOK_MEM_READ if reads else 0)
        first = max(0, paddr - MAX_ACCESS + 1)
        return self._added(self._uc.hook_add(kinds, self._hook(on_access, "watch hook"), None,
                                             first, paddr + size - 1))

    def remove(self, handle: int) -> None:
        """Remove a watch; from a hook, the slice ends now and the hook goes then."""
        if self.in_slice:
            self._spent.append(handle)
            self._uc.emu_stop()
        else:
            self._uc.hook_del(handle)
        self._changed = True

    def _added(self, handle: int) -> int:
        """Code already translated does not see a new hook: the slice ends and the
        translations are dropped before the next (after_slice)."""
        self._changed = True
        if self.in_slice:
            self._uc.emu_stop()
        else:
            self._uc.ctl_flush_tb()
        return handle

    def end_slice_then(self, then: Callable[[], None], *, before_this_instruction: bool) -> None:
        """From a watch: end the slice and call THEN once it has ended, before the
        instruction a code watch reported (which does not run), or after the one a
        memory watch saw. Stopped from a memory hook, Unicorn leaves EIP on that
        instruction with its store done and the rest undone (UNICORN.md), so the
        stores are undone and the instruction run once more, alone (_replay_access)."""
        self._after_slice.append(then)
        self._replay = self._replay or not before_this_instruction
        self._uc.emu_stop()

    # -- hooks on every instruction, for a moment ---------------------------------------
    def stop_at_next_instruction(self) -> None:
        """End the slice before the next instruction. Not emu_stop from a device's own
        callback: stopped inside an MMIO access, Unicorn runs the instruction again,
        and the access with it."""
        self.stopping_soon = True

        def on_code(uc: Uc, address: int, size: int, _) -> None:
            if self.stopping_soon:
                self.stopping_soon = False
                self._spent.append(handle)
                uc.emu_stop()

        handle = self._uc.hook_add(UC_HOOK_CODE, self._hook(on_code, "instruction hook"))

    def after_next_iret(self, callback: Callable[[], None]) -> None:
        """Call CALLBACK once the next iret has executed, and end the slice there: a
        hook on every instruction until then (47x slower, UNICORN.md), which is why
        only an NMI handler's short life is watched so. The hook is removed once the
        slice has ended, outside Unicorn's callbacks."""
        state = {"iret": False, "done": False}

        def on_code(uc: Uc, address: int, size: int, _) -> None:
            if state["done"]:
                return
            try:
                if state["iret"]:
                    state["done"] = True
                    self._spent.append(handle)
                    uc.emu_stop()
                    callback()
                elif size <= 2:
                    code = self._memory.read_virt(address, size)
                    state["iret"] = code[-1] == IRET and (
                        size == 1 or code[0] in (OPERAND_SIZE_PREFIX, REX_W))
            except BaseException as exc:
                self._fail(exc)

        handle = self._uc.hook_add(UC_HOOK_CODE, self._hook(on_code, "instruction hook"))

    # -- the slice's edges (Machine.run_slice, Machine.finish_slice) -------------------
    def start_slice(self) -> None:
        self.hlt_executed = False
        self.in_slice = True

    def emulation_returned(self) -> None:
        """Emulation has returned: the hooks spent in the slice are removed (and the
        code translated while they were in place dropped)."""
        self.in_slice = self.stopping_soon = False
        if self._spent:
            while self._spent:
                self._uc.hook_del(self._spent.pop())
            self._uc.ctl_flush_tb()

    def after_slice(self, stopped: Callable[[], bool]) -> None:
        """What the watches left for after the slice: the access a memory watch ended
        it on run again, new or removed watches seen from the next slice on, and
        end_slice_then's calls, until one of them STOPPED the run."""
        if self._replay:
            self._replay_access()
        self._undo.clear()
        if self._changed:
            self._changed = False
            self._uc.ctl_flush_tb()
        while self._after_slice and not stopped():
            self._after_slice.pop(0)()
        self._after_slice.clear()

    def _replay_access(self) -> None:
        for address, old in reversed(self._undo):
            self._uc.mem_write(address, old)
        self._replaying = True
        try:
            emulate(self._uc, self._cpu.ip, UNTIL_NEVER, 1)
        finally:
            self._replaying = self._replay = False
