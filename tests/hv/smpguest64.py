"""64-bit Xen guests with two vCPUs, in tests/hv/xenguest64.py's style.

SMP: vCPU 0 binds an IPI port to each vCPU and VIRQ_TIMER on vCPU 1, initialises
vCPU 1 from a 64-bit vcpu_guest_context and brings it up. vCPU 1 moves its vcpu_info
into a page of its own (VCPUOP_register_vcpu_info) and registers a runstate area;
the two play IPI ping-pong three times; vCPU 1 arms its single-shot timer, takes it,
and goes down; vCPU 0 arms its own (set_timer_op), then reads vCPU 1's runstate.

FAILSAFE: vCPU 1's context names data selectors, two of them bad; Xen's
load_segments cannot load those when vCPU 1 first runs, and sends it to its failsafe
callback, which records its frame, its data selectors and its event mask.

ZAP: vCPU 1 loads DS from the domain's GDT and blocks; vCPU 0 makes that descriptor
not present (update_descriptor) and wakes vCPU 1 with an IPI; on the way back to the
CPU vCPU 1's DS cannot be loaded, and it goes to its failsafe callback from where it
blocked.

Numbers are typed from public/vcpu.h, event_channel.h, xen.h, arch-x86/xen.h and
xen-x86_64.h (the offsets of the 64-bit vcpu_guest_context checked with gcc -m64),
not imported from pvtool.
"""

from tests.hv.smpguest import MESSAGES as SMP_MESSAGES
from tests.hv.smpguest import message_data

SMP64_MACROS = r"""
    .set HC_set_gdt, 2
    .set HC_set_callbacks, 4
    .set HC_update_descriptor, 10
    .set HC_set_timer_op, 15
    .set HC_vcpu_op, 24
    .set HC_event_channel_op, 32
    .set CONSOLEIO_write, 0
    .set EVTCHNOP_bind_virq, 1
    .set EVTCHNOP_send, 4
    .set EVTCHNOP_bind_ipi, 7
    .set VIRQ_TIMER, 0
    .set VCPUOP_initialise, 0
    .set VCPUOP_up, 1
    .set VCPUOP_down, 2
    .set VCPUOP_is_up, 3
    .set VCPUOP_get_runstate_info, 4
    .set VCPUOP_register_runstate_memory_area, 5
    .set VCPUOP_set_singleshot_timer, 8
    .set VCPUOP_register_vcpu_info, 10
    .set SCHEDOP_yield, 0
    .set SCHEDOP_block, 1
    .set VGCF_in_kernel, 4
    .set VGCF_failsafe_disables_events, 8
    .set VCPU0_INFO, shinfo
    .set EVTCHN_PENDING, shinfo + 2048
    .set VI_upcall_mask, 1
    .set VI_pending_sel, 8
    .set VI_system_time, 32 + 16
    /* vcpu_guest_context (x86-64) */
    .set CTX_flags, 512
    .set CTX_r11, 520 + 6 * 8
    .set CTX_rcx, 520 + 11 * 8
    .set CTX_rip, 648
    .set CTX_cs, 656
    .set CTX_rflags, 664
    .set CTX_rsp, 672
    .set CTX_ss, 680
    .set CTX_es, 688
    .set CTX_ds, 696
    .set CTX_fs, 704
    .set CTX_gs, 712
    .set CTX_gdt_frames, 4832
    .set CTX_gdt_ents, 4960
    .set CTX_kernel_sp, 4976
    .set CTX_cr3, 4984 + 3 * 8
    .set CTX_event_eip, 5112
    .set CTX_failsafe_eip, 5120

    .macro PRINT msg
    mov edi, CONSOLEIO_write
    mov esi, offset \msg\()_len
    lea rdx, [rip + \msg]
    HYPERCALL console_io
    .endm

    .macro VCPU_OP cmd, vcpu, arg
    mov edi, \cmd
    mov esi, \vcpu
    lea rdx, [rip + \arg]
    HYPERCALL vcpu_op
    .endm

    .macro SEND port
    mov eax, [rip + \port]
    mov [rip + send_req], eax
    mov edi, EVTCHNOP_send
    lea rsi, [rip + send_req]
    HYPERCALL event_channel_op
    .endm

    .macro BIND_IPI vcpu, port
    mov dword ptr [rip + ipi_req], \vcpu
    mov edi, EVTCHNOP_bind_ipi
    lea rsi, [rip + ipi_req]
    HYPERCALL event_channel_op
    mov eax, [rip + ipi_req + 4]
    mov [rip + \port], eax
    .endm

    .macro BIND_TIMER vcpu, port
    mov dword ptr [rip + virq_req], VIRQ_TIMER
    mov dword ptr [rip + virq_req + 4], \vcpu
    mov edi, EVTCHNOP_bind_virq
    lea rsi, [rip + virq_req]
    HYPERCALL event_channel_op
    mov eax, [rip + virq_req + 8]
    mov [rip + \port], eax
    .endm

    .macro YIELD
    mov edi, SCHEDOP_yield
    xor esi, esi
    HYPERCALL sched_op
    .endm

    .macro BLOCK
    mov edi, SCHEDOP_block
    xor esi, esi
    HYPERCALL sched_op
    .endm

    .macro MAP_SHARED_INFO
    mov rax, [rip + start_info_ptr]
    mov rsi, [rax + SI_shared_info]
    or rsi, 0x63
    lea rdi, [rip + shinfo]
    mov edx, UVMF_INVLPG
    HYPERCALL update_va_mapping
    .endm

    /* vCPU 1's context: ENTRY on STACK, in kernel mode on the kernel's L4 */
    .macro VCPU1_CONTEXT entry, stack
    mov rax, [rip + start_info_ptr]
    mov rax, [rax + SI_pt_base]
    mov ecx, 0x80000000                     /* less VIRT_BASE, modulo 2^64 */
    add rax, rcx                            /* its frame: VA less VIRT_BASE */
    mov [rip + ctx + CTX_cr3], rax
    mov qword ptr [rip + ctx + CTX_flags], VGCF_in_kernel | VGCF_failsafe_disables_events
    lea rax, [rip + \entry]
    mov [rip + ctx + CTX_rip], rax
    mov word ptr [rip + ctx + CTX_cs], 0xe030
    mov qword ptr [rip + ctx + CTX_rflags], 0x3202
    lea rax, [rip + \stack]
    mov [rip + ctx + CTX_rsp], rax
    mov [rip + ctx + CTX_kernel_sp], rax
    mov word ptr [rip + ctx + CTX_ss], 0xe028
    lea rax, [rip + upcall1]
    mov [rip + ctx + CTX_event_eip], rax
    lea rax, [rip + failsafe1]
    mov [rip + ctx + CTX_failsafe_eip], rax
    .endm

    /* the failsafe callback's frame into failsafe_frame, and DS as it runs */
    .macro RECORD_FAILSAFE
    mov rsi, rsp
    lea rdi, [rip + failsafe_frame]
    mov ecx, 11
    rep movsq
    mov [rip + seen_ds], ds
    mov dword ptr [rip + failsafe_taken], 1
    .endm

    .macro TO_IRET
    push 0
    jmp hypercall_page + 23 * 32
    .endm
"""

SMP64_TEXT = SMP64_MACROS + r"""
    MAP_SHARED_INFO
    lea rdi, [rip + upcall0]
    lea rsi, [rip + failsafe0]
    xor edx, edx
    HYPERCALL set_callbacks
    BIND_IPI 1, port_to1
    BIND_IPI 0, port_to0
    BIND_TIMER 1, timer1_port
    BIND_TIMER 0, timer0_port

    VCPU1_CONTEXT vcpu1_entry, stack1_top
    VCPU_OP VCPUOP_up, 1, ctx
    mov [rip + up_uninitialised], rax
    VCPU_OP VCPUOP_initialise, 1, ctx
    mov [rip + init_result], rax
    VCPU_OP VCPUOP_initialise, 1, ctx
    mov [rip + init_again], rax
    VCPU_OP VCPUOP_up, 1, ctx
    mov [rip + up_result], rax
    VCPU_OP VCPUOP_is_up, 1, ctx
    mov [rip + is_up_after], rax
    PRINT msg_up
    mov byte ptr [rip + VCPU0_INFO + VI_upcall_mask], 0

    xor ebx, ebx
ping_next:
    SEND port_to1
    inc ebx
wait_pong:
    cmp [rip + pongs], ebx
    jae got_pong
    BLOCK
    jmp wait_pong
got_pong:
    PRINT msg_pong
    cmp ebx, 3
    jb ping_next

    mov rdi, [rip + VCPU0_INFO + VI_system_time]  /* set_timer_op(now + 5 ms) */
    add rdi, 5000000
    HYPERCALL set_timer_op
wait_timer0:
    cmp dword ptr [rip + timer0_fired], 0
    jne got_timer0
    BLOCK
    jmp wait_timer0
got_timer0:
    PRINT msg_timer0
wait_down:
    VCPU_OP VCPUOP_is_up, 1, ctx
    test eax, eax
    jz vcpu1_is_down
    YIELD
    jmp wait_down
vcpu1_is_down:
    PRINT msg_down
    VCPU_OP VCPUOP_get_runstate_info, 1, runstate1
    mov [rip + runstate_result], rax
"""

SMP64_HANDLERS = r"""
/* Each vCPU takes its own ports: clear the upcall flag and the selector of its
   vcpu_info (at [INFO_PTR]), then count its IPI port and its timer port if found
   pending (and clear them). */
    .macro UPCALL info_ptr, ipi_port, ipis, timer_port, timers
    pop rcx
    pop r11
    push rax
    push rcx
    mov rax, [rip + \info_ptr]
    mov byte ptr [rax], 0
    mov qword ptr [rax + VI_pending_sel], 0
    mov ecx, [rip + \ipi_port]
    lock btr qword ptr [rip + EVTCHN_PENDING], rcx
    adc dword ptr [rip + \ipis], 0
    mov ecx, [rip + \timer_port]
    lock btr qword ptr [rip + EVTCHN_PENDING], rcx
    adc dword ptr [rip + \timers], 0
    pop rcx
    pop rax
    TO_IRET
    .endm
upcall0:
    UPCALL info0_ptr, port_to0, pongs, timer0_port, timer0_fired
upcall1:
    UPCALL info1_ptr, port_to1, pings, timer1_port, timer1_fired
failsafe0:
failsafe1:
    jmp failsafe1

vcpu1_entry:
    mov [rip + vcpu1_rsp], rsp
    pushfq
    pop rax
    mov [rip + vcpu1_rflags], rax
    PRINT msg_started
    lea rax, [rip + info1_page]             /* vcpu_info into a page of its own */
    mov ecx, 0x80000000                     /* less VIRT_BASE, modulo 2^64 */
    add rax, rcx
    shr rax, 12
    mov [rip + info_req], rax
    mov dword ptr [rip + info_req + 8], 64
    VCPU_OP VCPUOP_register_vcpu_info, 1, info_req
    mov [rip + info_result], rax
    mov rax, [rip + info1_page + 64 + VI_pending_sel]
    mov [rip + info1_selector], rax
    lea rax, [rip + info1_page + 64]
    mov [rip + info1_ptr], rax
    lea rax, [rip + runstate_area]
    mov [rip + runstate_req], rax
    VCPU_OP VCPUOP_register_runstate_memory_area, 1, runstate_req
    mov [rip + runstate_area_result], rax
    mov eax, [rip + runstate_area]
    mov [rip + runstate_seen], eax
    mov byte ptr [rip + info1_page + 64 + VI_upcall_mask], 0
    xor ebx, ebx
wait_ping:
    cmp [rip + pings], ebx
    ja got_ping
    BLOCK
    jmp wait_ping
got_ping:
    inc ebx
    PRINT msg_ping
    SEND port_to0
    cmp ebx, 3
    jb wait_ping
    mov rax, [rip + info1_page + 64 + VI_system_time]  /* its own time + 1 ms */
    add rax, 1000000
    mov [rip + sshot], rax
    VCPU_OP VCPUOP_set_singleshot_timer, 1, sshot
    mov [rip + sshot_result], rax
wait_timer1:
    cmp dword ptr [rip + timer1_fired], 0
    jne got_timer1
    BLOCK
    jmp wait_timer1
got_timer1:
    PRINT msg_timer1
    VCPU_OP VCPUOP_down, 1, ctx
    mov dword ptr [rip + ran_after_down], 1
vcpu1_dead:
    jmp vcpu1_dead
"""

# The 32-bit guest's lines (tests/hv/smpguest.py), but for vCPU 1's "going down".
MESSAGES = {label: text for label, text in SMP_MESSAGES.items() if label != "msg_v1down"}

SMP64_DATA = message_data(MESSAGES) + """
    .balign 8
info0_ptr: .quad shinfo
info1_ptr: .quad shinfo + 64
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
ran_after_down: .long 0
runstate_seen: .long 0xff
    .balign 8
sshot: .quad 0, 0
info_req: .quad 0, 0
runstate_req: .quad 0
up_uninitialised: .quad 0
init_result: .quad 0
init_again: .quad 0
up_result: .quad 0
is_up_after: .quad 0
info_result: .quad 0
info1_selector: .quad 0
runstate_area_result: .quad 0
sshot_result: .quad 0
runstate_result: .quad 0
vcpu1_rsp: .quad 0
vcpu1_rflags: .quad 0
runstate1: .fill 48, 1, 0
runstate_area: .fill 48, 1, 0
"""

SMP64_BSS = """
shinfo: .skip 4096
info1_page: .skip 4096
ctx: .skip 5168
    .balign 16
stack1: .skip 4096
stack1_top:
"""

# In the round-robin's order (tests/hv/smpguest.py): vCPU 1 runs once vCPU 0 blocks
# for its first pong; its timer (1 ms after its third ping) fires before vCPU 0's.
EXPECTED_OUTPUT64 = b"".join(f"{MESSAGES[label]}\n".encode() for label in (
    "msg_up", "msg_started", "msg_ping", "msg_pong", "msg_ping", "msg_pong", "msg_ping",
    "msg_pong", "msg_timer1", "msg_timer0", "msg_down"))

# vCPU 1 starts with DS = 0x0b (GDT entry 1, which the domain never filled), ES =
# Xen's flat 0xe02b, FS null and GS = 0x2c (an LDT selector: there is no LDT), RCX
# 0x1111 and R11 0x2222, events unmasked; its failsafe callback copies the 11 qwords
# of its frame, the selectors it now has, its RSP and its event mask, and goes down.
FAILSAFE_TEXT = SMP64_MACROS + r"""
    MAP_SHARED_INFO
    VCPU1_CONTEXT vcpu1_entry, stack1_top
    mov word ptr [rip + ctx + CTX_ds], 0x0b
    mov word ptr [rip + ctx + CTX_es], 0xe02b
    mov word ptr [rip + ctx + CTX_gs], 0x2c
    mov qword ptr [rip + ctx + CTX_rcx], 0x1111
    mov qword ptr [rip + ctx + CTX_r11], 0x2222
    VCPU_OP VCPUOP_initialise, 1, ctx
    mov [rip + init_result], rax
    mov byte ptr [rip + shinfo + 64 + VI_upcall_mask], 0
    VCPU_OP VCPUOP_up, 1, ctx
wait_failsafe:
    cmp dword ptr [rip + failsafe_taken], 0
    jne failsafe_done
    YIELD
    jmp wait_failsafe
failsafe_done:
"""
FAILSAFE_HANDLERS = r"""
upcall1:
    jmp upcall1
vcpu1_entry:
    mov dword ptr [rip + entry_reached], 1
    jmp vcpu1_entry
failsafe1:
    mov [rip + failsafe_rsp], rsp
    mov [rip + seen_es], es
    mov [rip + seen_fs], fs
    mov [rip + seen_gs], gs
    mov al, [rip + shinfo + 64 + VI_upcall_mask]
    mov [rip + seen_mask], al
    RECORD_FAILSAFE
    VCPU_OP VCPUOP_down, 1, ctx
"""
FAILSAFE_DATA = """
    .balign 8
init_result: .quad 0
failsafe_rsp: .quad 0
failsafe_frame: .fill 11, 8, 0
seen_ds: .word 0xffff
seen_es: .word 0xffff
seen_fs: .word 0xffff
seen_gs: .word 0xffff
seen_mask: .byte 0xff
    .balign 4
failsafe_taken: .long 0
entry_reached: .long 0
"""
FAILSAFE_BSS = """
shinfo: .skip 4096
ctx: .skip 5168
    .balign 16
stack1: .skip 4096
stack1_top:
"""

ZAP_TEXT = SMP64_MACROS + r"""
    MAP_SHARED_INFO
    lea rax, [rip + gdt_page]                /* the GDT: null, then flat ring-3 data */
    mov ecx, 0x80000000
    add rax, rcx
    mov [rip + gdt_maddr], rax
    shr rax, 12
    mov [rip + gdt_frames], rax
    mov rax, 0x00cff3000000ffff
    mov [rip + gdt_page + 8], rax
    lea rdi, [rip + gdt_frames]
    mov esi, 2
    HYPERCALL set_gdt
    mov [rip + gdt_result], rax
    BIND_IPI 1, port_to1
    VCPU1_CONTEXT vcpu1_entry, stack1_top
    mov rax, [rip + gdt_frames]              /* vCPU 1's GDT: the same frame */
    mov [rip + ctx + CTX_gdt_frames], rax
    mov qword ptr [rip + ctx + CTX_gdt_ents], 2
    VCPU_OP VCPUOP_initialise, 1, ctx
    VCPU_OP VCPUOP_up, 1, ctx
wait_loaded:
    cmp dword ptr [rip + ds_loaded], 0
    jne loaded
    YIELD
    jmp wait_loaded
loaded:
    mov rdi, [rip + gdt_maddr]               /* entry 1 not present */
    add rdi, 8
    xor esi, esi
    HYPERCALL update_descriptor
    mov [rip + zap_result], rax
    SEND port_to1
wait_failsafe:
    cmp dword ptr [rip + failsafe_taken], 0
    jne failsafe_done
    YIELD
    jmp wait_failsafe
failsafe_done:
"""
ZAP_HANDLERS = r"""
upcall1:
    pop rcx
    pop r11
    TO_IRET
vcpu1_entry:
    mov ax, 0x0b
    mov ds, ax
    mov [rip + loaded_ds], ds
    mov byte ptr [rip + shinfo + 64 + VI_upcall_mask], 0
    mov dword ptr [rip + ds_loaded], 1
park:
    BLOCK
    mov dword ptr [rip + woke_without_failsafe], 1
    jmp park
failsafe1:
    RECORD_FAILSAFE
    VCPU_OP VCPUOP_down, 1, ctx
"""
ZAP_DATA = """
    .balign 8
gdt_frames: .quad 0
gdt_maddr: .quad 0
gdt_result: .quad 1
zap_result: .quad 1
failsafe_frame: .fill 11, 8, 0
ipi_req: .long 0, 0
send_req: .long 0
port_to1: .long 0
ds_loaded: .long 0
failsafe_taken: .long 0
woke_without_failsafe: .long 0
loaded_ds: .word 0
seen_ds: .word 0xffff
"""
ZAP_BSS = """
shinfo: .skip 4096
gdt_page: .skip 4096
ctx: .skip 5168
    .balign 16
stack1: .skip 4096
stack1_top:
"""
