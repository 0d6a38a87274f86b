"""A 32-bit Xen guest with two vCPUs, in tests/hv/xenguest.py's style: vCPU 0 binds
an IPI port to each vCPU and VIRQ_TIMER on both, initialises vCPU 1 from a
vcpu_guest_context and brings it up; the two play IPI ping-pong three times, each
then arms its own timer (vCPU 0 with set_timer_op, vCPU 1 with
VCPUOP_set_singleshot_timer), vCPU 1 takes itself down, and vCPU 0 reads its
runstate and shuts the domain down. Both print with console_io.

Numbers are typed from public/vcpu.h, event_channel.h and arch-x86/xen.h (offsets
of the 32-bit vcpu_guest_context, checked with gcc -m32), not imported from pvtool.
"""

SMP_MACROS = r"""
    .set HC_set_callbacks, 4
    .set HC_set_timer_op, 15
    .set HC_vcpu_op, 24
    .set HC_event_channel_op, 32
    .set EVTCHNOP_bind_virq, 1
    .set EVTCHNOP_send, 4
    .set EVTCHNOP_bind_ipi, 7
    .set VCPUOP_initialise, 0
    .set VCPUOP_up, 1
    .set VCPUOP_down, 2
    .set VCPUOP_is_up, 3
    .set VCPUOP_get_runstate_info, 4
    .set VCPUOP_set_singleshot_timer, 8
    .set SCHEDOP_block, 1
    .set VCPU1_INFO, shinfo + 64
    .set EVTCHN_PENDING, shinfo + 2048
    .set TIME_SYSTEM_TIME, 48
    /* vcpu_guest_context (x86-32) */
    .set CTX_eip, 548
    .set CTX_cs, 552
    .set CTX_eflags, 556
    .set CTX_esp, 560
    .set CTX_ss, 564
    .set CTX_es, 568
    .set CTX_ds, 572
    .set CTX_kernel_ss, 2708
    .set CTX_kernel_sp, 2712
    .set CTX_cr3, 2716 + 12
    .set CTX_event_cs, 2780
    .set CTX_event_eip, 2784
    .set CTX_failsafe_cs, 2788
    .set CTX_failsafe_eip, 2792

    .macro PRINT msg
    mov ecx, offset \msg\()_len
    mov edx, offset \msg
    call print
    .endm

    .macro VCPU_OP cmd, vcpu, arg
    mov ebx, \cmd
    mov ecx, \vcpu
    mov edx, offset \arg
    HYPERCALL vcpu_op
    .endm

    .macro SEND port
    mov eax, [\port]
    mov [send_req], eax
    mov ebx, EVTCHNOP_send
    mov ecx, offset send_req
    HYPERCALL event_channel_op
    .endm

    .macro BLOCK
    mov ebx, SCHEDOP_block
    xor ecx, ecx
    HYPERCALL sched_op
    .endm

    .macro BIND_IPI vcpu, port
    mov dword ptr [ipi_req], \vcpu
    mov ebx, EVTCHNOP_bind_ipi
    mov ecx, offset ipi_req
    HYPERCALL event_channel_op
    mov eax, [ipi_req + 4]
    mov [\port], eax
    .endm

    .macro BIND_TIMER vcpu, port
    mov dword ptr [virq_req], 0
    mov dword ptr [virq_req + 4], \vcpu
    mov ebx, EVTCHNOP_bind_virq
    mov ecx, offset virq_req
    HYPERCALL event_channel_op
    mov eax, [virq_req + 8]
    mov [\port], eax
    .endm

    /* vCPU 1's vcpu_guest_context: ENTRY on STACK, the callbacks at upcall1 */
    .macro VCPU1_CONTEXT entry, stack
    mov eax, [start_info_ptr]
    mov eax, [eax + SI_pt_base]             /* VIRT_BASE 0: its VA is its address */
    mov [ctx + CTX_cr3], eax
    mov dword ptr [ctx + CTX_eip], offset \entry
    mov dword ptr [ctx + CTX_cs], FLAT_RING1_CS
    mov dword ptr [ctx + CTX_eflags], 0x2
    mov dword ptr [ctx + CTX_esp], offset \stack
    mov dword ptr [ctx + CTX_ss], FLAT_RING1_DS
    mov dword ptr [ctx + CTX_es], FLAT_RING1_DS
    mov dword ptr [ctx + CTX_ds], FLAT_RING1_DS
    mov dword ptr [ctx + CTX_kernel_ss], FLAT_RING1_DS
    mov dword ptr [ctx + CTX_kernel_sp], offset \stack
    mov dword ptr [ctx + CTX_event_cs], FLAT_RING1_CS
    mov dword ptr [ctx + CTX_event_eip], offset upcall1
    mov dword ptr [ctx + CTX_failsafe_cs], FLAT_RING1_CS
    mov dword ptr [ctx + CTX_failsafe_eip], offset upcall1
    .endm
"""

SMP_TEXT = SMP_MACROS + r"""
    MAP_SHARED_INFO shinfo
    mov ebx, FLAT_RING1_CS
    mov ecx, offset upcall0
    mov edx, FLAT_RING1_CS
    mov esi, offset upcall0
    HYPERCALL set_callbacks
    BIND_IPI 1, port_to1
    BIND_IPI 0, port_to0
    BIND_TIMER 0, timer0_port
    BIND_TIMER 1, timer1_port

    VCPU1_CONTEXT vcpu1_entry, stack1_top
    VCPU_OP VCPUOP_is_up, 1, 0
    mov [is_up_before], eax
    VCPU_OP VCPUOP_up, 1, 0
    mov [up_uninitialised], eax
    VCPU_OP VCPUOP_initialise, 1, ctx
    mov [init_result], eax
    VCPU_OP VCPUOP_initialise, 1, ctx
    mov [init_again], eax
    VCPU_OP VCPUOP_up, 1, 0
    mov [up_result], eax
    VCPU_OP VCPUOP_is_up, 1, 0
    mov [is_up_after], eax
    PRINT msg_up
    mov byte ptr [shinfo + VCPU_upcall_mask], 0

    xor esi, esi
ping_next:
    SEND port_to1
    inc esi
wait_pong:
    cmp [pongs], esi
    jae got_pong
    BLOCK
    jmp wait_pong
got_pong:
    PRINT msg_pong
    cmp esi, 3
    jb ping_next

    mov ebx, [shinfo + 32 + 16]             /* set_timer_op(system time + 5 ms) */
    mov ecx, [shinfo + 32 + 20]
    add ebx, 5000000
    adc ecx, 0
    HYPERCALL set_timer_op
wait_timer0:
    cmp dword ptr [timer0_fired], 0
    jne got_timer0
    BLOCK
    jmp wait_timer0
got_timer0:
    PRINT msg_timer0
wait_down:
    VCPU_OP VCPUOP_is_up, 1, 0
    test eax, eax
    jz vcpu1_is_down
    mov ebx, SCHEDOP_yield
    xor ecx, ecx
    HYPERCALL sched_op
    jmp wait_down
vcpu1_is_down:
    PRINT msg_down
    VCPU_OP VCPUOP_get_runstate_info, 1, runstate1
    mov [runstate_result], eax
"""

SMP_HANDLERS = r"""
print:                                      /* console_io(write, ECX bytes at EDX) */
    push ebx
    mov ebx, CONSOLEIO_write
    HYPERCALL console_io
    pop ebx
    ret

/* Each vCPU takes its own ports: clear the upcall flag and selector of its vcpu_info
   (INFO), then count its IPI port and its timer port if found pending (and clear it). */
    .macro UPCALL info, ipi_port, ipis, timer_port, timers
    pushad
    mov byte ptr [\info], 0
    mov dword ptr [\info + 4], 0
    mov ecx, [\ipi_port]
    lock btr dword ptr [EVTCHN_PENDING], ecx
    adc dword ptr [\ipis], 0
    mov ecx, [\timer_port]
    lock btr dword ptr [EVTCHN_PENDING], ecx
    adc dword ptr [\timers], 0
    popad
    HYPERVISOR_IRET
    .endm
upcall0:
    UPCALL shinfo, port_to0, pongs, timer0_port, timer0_fired
upcall1:
    UPCALL VCPU1_INFO, port_to1, pings, timer1_port, timer1_fired

vcpu1_entry:
    mov [vcpu1_esp], esp
    PRINT msg_started
    mov byte ptr [VCPU1_INFO + VCPU_upcall_mask], 0
    xor esi, esi
wait_ping:
    cmp [pings], esi
    ja got_ping
    BLOCK
    jmp wait_ping
got_ping:
    inc esi
    PRINT msg_ping
    SEND port_to0
    cmp esi, 3
    jb wait_ping
    mov eax, [VCPU1_INFO + 32 + 16]         /* single-shot: own system time + 1 ms */
    mov edx, [VCPU1_INFO + 32 + 20]
    add eax, 1000000
    adc edx, 0
    mov [sshot], eax
    mov [sshot + 4], edx
    VCPU_OP VCPUOP_set_singleshot_timer, 1, sshot
    mov [sshot_result], eax
wait_timer1:
    cmp dword ptr [timer1_fired], 0
    jne got_timer1
    BLOCK
    jmp wait_timer1
got_timer1:
    PRINT msg_timer1
    PRINT msg_v1down
    VCPU_OP VCPUOP_down, 1, 0
    mov dword ptr [ran_after_down], 1
vcpu1_dead:
    jmp vcpu1_dead
"""

MESSAGES = {
    "msg_up": "vcpu0: vcpu1 is up",
    "msg_started": "vcpu1: started",
    "msg_ping": "vcpu1: ping",
    "msg_pong": "vcpu0: pong",
    "msg_timer1": "vcpu1: timer",
    "msg_v1down": "vcpu1: going down",
    "msg_timer0": "vcpu0: timer",
    "msg_down": "vcpu0: vcpu1 is down",
}


def message_data(messages: dict[str, str]) -> str:
    """Each message as a line of text at its label, with its length as label_len."""
    return "".join(f'{label}: .ascii "{text}\\n"\n    .set {label}_len, . - {label}\n'
                   for label, text in messages.items())


SMP_DATA = message_data(MESSAGES) + """
    .balign 4
port_to0: .long 0
port_to1: .long 0
timer0_port: .long 0
timer1_port: .long 0
pings: .long 0
pongs: .long 0
timer0_fired: .long 0
timer1_fired: .long 0
ipi_req: .long 0, 0
virq_req: .long 0, 0, 0
send_req: .long 0
sshot: .long 0, 0, 0
is_up_before: .long 0
up_uninitialised: .long 0
init_result: .long 0
init_again: .long 0
up_result: .long 0
is_up_after: .long 0
sshot_result: .long 0
runstate_result: .long 0
ran_after_down: .long 0
vcpu1_esp: .long 0
runstate1: .fill 44, 1, 0
"""

SMP_BSS = """
shinfo: .skip 4096
ctx: .skip 2800
    .balign 16
stack1: .skip 4096
stack1_top:
"""

# What the two vCPUs print, in the order the round-robin scheduler makes: vCPU 1
# runs once vCPU 0 blocks for its first pong; vCPU 1's timer (1 ms after its third
# ping) fires before vCPU 0's (5 ms after its third pong).
EXPECTED_OUTPUT = b"".join(f"{MESSAGES[label]}\n".encode() for label in (
    "msg_up", "msg_started", "msg_ping", "msg_pong", "msg_ping", "msg_pong", "msg_ping",
    "msg_pong", "msg_timer1", "msg_v1down", "msg_timer0", "msg_down"))

# Both vCPUs block with events enabled and nothing bound to wake them: the run must
# stop, not spin. vCPU 1 counts its starts so that a spurious wake shows.
BLOCKED_TEXT = SMP_MACROS + r"""
    MAP_SHARED_INFO shinfo
    VCPU1_CONTEXT park1, stack1_top
    VCPU_OP VCPUOP_initialise, 1, ctx
    VCPU_OP VCPUOP_up, 1, 0
    mov byte ptr [shinfo + VCPU_upcall_mask], 0
park0:
    inc dword ptr [wakes0]
    BLOCK
    jmp park0
"""
BLOCKED_HANDLERS = r"""
upcall1:
    HYPERVISOR_IRET
park1:
    mov byte ptr [VCPU1_INFO + VCPU_upcall_mask], 0
    inc dword ptr [wakes1]
    BLOCK
    jmp park1
"""
BLOCKED_DATA = """
wakes0: .long 0
wakes1: .long 0
"""
BLOCKED_BSS = """
shinfo: .skip 4096
ctx: .skip 2800
    .balign 16
stack1: .skip 4096
stack1_top:
"""
