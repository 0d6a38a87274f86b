"""Event channels, the timer and the console ring (XEN-ABI.md, "Structures"): the
2-level bitmaps in shared_info, the upcall flags, set_timer_op on the virtual clock,
SCHEDOP_poll, and the console backend draining out[] modulo its 2048 bytes.

Offsets are typed from XEN-ABI.md; guests run through pvtool's own run loop so that
virtual time moves as in `pvtool run`.
"""

import struct

from pvtool.machine.clock import VIRTUAL_HZ
from pvtool.run import Mode, RunOptions, _run_loop
from tests.hv.harness import boot
from tests.hv.xenguest import EINVAL, PAE_NOTES, neg

SHARED_INFO = 0xFC410000  # machine address, start_info.shared_info (white-box)
EVTCHN_PENDING, EVTCHN_MASK = SHARED_INFO + 2048, SHARED_INFO + 2176
UPCALL_PENDING, PENDING_SEL = SHARED_INFO + 0, SHARED_INFO + 4
TIME_VERSION, SYSTEM_TIME = SHARED_INFO + 32, SHARED_INFO + 48
RING_OUT, OUT_CONS, OUT_PROD = 1024, 3080, 3084
CONSOLE_PORT, STORE_PORT, DOMID_XEN = 2, 1, 0x7FF2
VIRQ_TIMER, EEXIST = 0, 17
STATUS_CLOSED, STATUS_UNBOUND, STATUS_INTERDOMAIN, STATUS_VIRQ = 0, 1, 2, 4
NOTES = PAE_NOTES  # the idle guest's (tests/hv/conftest.py): a PAE kernel


def u32(booted, address: int) -> int:
    return struct.unpack("<I", booted.memory.read_phys(address, 4))[0]


def test_the_console_ring_is_drained_modulo_its_size_and_bounded(idle):
    events, ring = idle.domain.events, idle.domain.console_ring.ring
    memory = idle.memory
    memory.write_phys(ring + RING_OUT + 2045, b"abc")
    memory.write_phys(ring + RING_OUT, b"de")
    memory.write_phys(ring + OUT_CONS, struct.pack("<II", 0xFFFFFFFD, 2))  # wraps twice
    events.send(CONSOLE_PORT)
    assert bytes(idle.output) == b"abcde"
    assert u32(idle, ring + OUT_CONS) == 2
    # A producer index 5000 ahead: one ring's worth is drained, no more.
    memory.write_phys(ring + OUT_CONS, struct.pack("<II", 0, 5000))
    events.send(CONSOLE_PORT)
    assert len(idle.output) == 5 + 2048 and u32(idle, ring + OUT_CONS) == 2048


def test_a_masked_port_stays_quiet_until_unmask_raises_it(idle):
    events = idle.domain.events
    port = events.bind_virq(VIRQ_TIMER, 0)
    assert port == 3  # 1 and 2 are xenstore and the console
    idle.memory.write_phys(EVTCHN_MASK, bytes((1 << port,)))
    events.send_virq(VIRQ_TIMER)
    assert idle.memory.read_phys(EVTCHN_PENDING, 1)[0] == 1 << port
    assert u32(idle, PENDING_SEL) == 0 and idle.domain.upcall_pending == 0
    events.unmask(port)
    assert u32(idle, PENDING_SEL) == 1 and idle.domain.upcall_pending == 1


def test_status_alloc_unbound_and_close(idle):
    events = idle.domain.events
    assert events.status(CONSOLE_PORT) == (STATUS_INTERDOMAIN, DOMID_XEN, CONSOLE_PORT)
    assert events.status(STORE_PORT)[0] == STATUS_INTERDOMAIN
    port = events.alloc_unbound(0x7FF0, 0)
    assert events.status(port)[0] == STATUS_UNBOUND
    timer = events.bind_virq(VIRQ_TIMER, 0)
    assert events.status(timer) == (STATUS_VIRQ, VIRQ_TIMER, 0)
    events.close(timer)
    assert events.status(timer) == (STATUS_CLOSED, 0, 0)


# The event callback (TIMER_HANDLERS' upcall) and VIRQ_TIMER bound to port 3.
CALLBACK_AND_TIMER_PORT = """
    MAP_SHARED_INFO shinfo
    mov ebx, FLAT_RING1_CS                  /* set_callbacks(cs, event, cs, failsafe) */
    mov ecx, offset upcall
    mov edx, FLAT_RING1_CS
    mov esi, offset upcall
    call hypercall_page + 4 * 32
    mov ebx, 1                              /* EVTCHNOP_bind_virq(VIRQ_TIMER) */
    mov ecx, offset bind
    call hypercall_page + 32 * 32
    mov [bind_result], eax
"""
TIMER_GUEST = CALLBACK_AND_TIMER_PORT + """
    mov ebx, 1
    mov ecx, offset bind
    call hypercall_page + 32 * 32
    mov [rebind_result], eax
    mov ebx, 4                              /* EVTCHNOP_send on a VIRQ port */
    mov ecx, offset bind + 8
    call hypercall_page + 32 * 32
    mov [send_result], eax
    mov ebx, [deadline]                     /* set_timer_op(lo, hi) */
    mov ecx, [deadline + 4]
    call hypercall_page + 15 * 32
1:  mov ebx, 1                              /* SCHEDOP_block until the upcall counted */
    xor ecx, ecx
    call hypercall_page + 29 * 32
    cmp dword ptr [upcalls], 0
    je 1b
    mov eax, [shinfo + 48]
    mov [woke_at], eax
    /* SCHEDOP_poll on the timer port with events masked: the timer wakes it */
    mov byte ptr [shinfo + VCPU_upcall_mask], 1
    mov ebx, [deadline2]
    mov ecx, [deadline2 + 4]
    call hypercall_page + 15 * 32
    mov eax, [bind + 8]
    mov [poll_port], eax
    mov ebx, 3
    mov ecx, offset poll
    call hypercall_page + 29 * 32
    mov [poll_result], eax
    mov eax, [shinfo + 2048]
    mov [pending_after_poll], eax
"""
TIMER_HANDLERS = """
upcall:
    inc dword ptr [upcalls]
    mov byte ptr [shinfo], 0                /* evtchn_upcall_pending */
    mov dword ptr [shinfo + 4], 0           /* evtchn_pending_sel */
    mov dword ptr [shinfo + 2048], 0        /* evtchn_pending */
    HYPERVISOR_IRET
"""
TIMER_DATA = """
bind: .long 0, 0, 0
bind_result: .long 1
rebind_result: .long 1
send_result: .long 1
deadline: .quad 2000000
deadline2: .quad 3000000
upcalls: .long 0
woke_at: .long 0
poll_port: .long 0
poll: .long poll_port, 1, 0, 0
poll_result: .long 1
pending_after_poll: .long 0
"""


def test_a_timer_event_wakes_a_blocked_vcpu_on_time_and_a_poll_returns_on_it(build):
    booted = boot(build(TIMER_GUEST, handlers=TIMER_HANDLERS, data=TIMER_DATA,
                        bss="shinfo: .skip 4096", notes=PAE_NOTES))
    stop = _run_loop(booted.machine, Mode.PV, RunOptions(max_insns=50_000_000))
    assert stop.stop.reason == "shutdown (poweroff)", stop.stop
    assert booted.u32s("bind_result", 3) == (0, neg(EEXIST), neg(EINVAL))
    assert booted.u32("upcalls") == 1  # the timer's; the poll ran with the upcall mask set
    assert booted.u32("woke_at") >= 2_000_000  # vcpu_info.time.system_time, ns
    assert u32(booted, TIME_VERSION) % 2 == 0  # even: not being updated
    assert booted.u32("poll_result") == 0
    assert booted.u32("pending_after_poll") == 1 << 3
    assert booted.machine.clock.insns * 10**9 // VIRTUAL_HZ >= 3_000_000
