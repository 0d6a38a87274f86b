"""What a hypercall's return delivers (hv/traps.py _on_return): Xen looks at the
vCPU's evtchn_upcall_pending on the way out of every hypercall, whoever set it, so a
guest that raises an upcall itself (as Linux's unmask_evtchn does for its own vCPU)
and forces it with a null hypercall (xen_force_evtchn_callback: a xen_version) gets its
callback at once, though xen_version is one of the QUIET hypercalls whose return path
is short."""

from tests.hv.test_events import CALLBACK_AND_TIMER_PORT, TIMER_DATA, TIMER_HANDLERS
from tests.hv.xenguest import PAE_NOTES

SELF_RAISED = CALLBACK_AND_TIMER_PORT + """
    mov dword ptr [shinfo + 2048], 1 << 3   /* the port's pending bit, as the guest sets it */
    mov dword ptr [shinfo + 4], 1           /* evtchn_pending_sel */
    mov byte ptr [shinfo], 1                /* evtchn_upcall_pending */
    mov byte ptr [shinfo + VCPU_upcall_mask], 0
    mov eax, [upcalls]
    mov [seen], eax                         /* upcalls before the hypercall */
    xor ebx, ebx                            /* xen_version(XENVER_version) */
    xor ecx, ecx
    call hypercall_page + 17 * 32
    mov [seen + 4], eax                     /* its answer */
    mov eax, [upcalls]
    mov [seen + 8], eax                     /* upcalls after it */
"""


def test_an_upcall_the_guest_raised_itself_comes_on_the_null_hypercalls_return(run_guest):
    booted = run_guest(SELF_RAISED, handlers=TIMER_HANDLERS,
                       data=TIMER_DATA + "seen: .long 99, 0, 0",
                       bss="shinfo: .skip 4096", notes=PAE_NOTES)
    assert booted.machine.stop.reason == "shutdown (poweroff)", booted.machine.stop
    before, version, after = booted.u32s("seen", 3)
    assert (before, after) == (0, 1)
    assert version >> 16 >= 3  # xen_version's answer, kept through the upcall
