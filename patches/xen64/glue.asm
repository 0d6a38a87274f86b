; patches/xen64/glue.asm: the glue a kernel ported by xen64 calls.
;
; The conventions of patches/xen32/glue.asm, in 64-bit form: each `## name` starts a
; function, assembled by keystone at its final address in .pvtext and checked by
; capstone; {names} come from pvtool's ABI data (hc_NAME: hypercall NAME's entry in the
; hypercall page; vcpu_*: vcpu_info in the page of .pvdata the PV entry maps onto
; shared_info; regs_*, mbi, mmuext... in .pvdata). Hypercalls take rdi, rsi, rdx, r10,
; r8 and return in rax; Xen's debug builds clobber the argument registers
; (XEN-ABI64.md 1.2), so a function saves what it passes. Unless it says otherwise a
; function preserves every register and the flags, since it replaces an instruction
; the kernel did not expect to clobber anything.

## pv_entry
; Xen enters here (ELF note ENTRY) in long mode at CPL 3 with rsi = start_info, the
; image mapped at VIRT_BASE by the builder's tables (XEN-ABI64.md 1.8). Give the
; kernel the state its 64-bit entry expects (minikern64's start64, like vmlinux's
; startup_64): low RAM identity-mapped and the link range mapped to the same frames,
; rdi = the Multiboot magic, rsi = the physical address of a Multiboot information
; structure built from start_info, whose mem_upper ends at .pvdata (patch/layout64.py
; links the glue above the RAM the kernel may take). The stack is the glue's own. It
; records pv_iret where the hypervisor finds it (regs_iret_entry: hv/trapsites64.py).
mov rsp, {pv_stack_top}
mov qword ptr [{start_info_ptr}], rsi
mov rax, qword ptr [rsi + {start_info_mfn_list}]
mov qword ptr [{mfn_list_ptr}], rax
mov rax, {pv_iret}
mov qword ptr [{regs_iret_entry}], rax
mov edi, {physdevop_set_iopl}
mov rsi, {iopl_arg}
call {hc_physdev_op}
test rax, rax
jne no_iopl
call {pv_identity_map}
call {pv_map_shared_info}
call {pv_gdt_frames}
mov rsi, qword ptr [{start_info_ptr}]
mov rax, qword ptr [rsi + {start_info_nr_pages}]
shl rax, 2
sub rax, 1024
cmp rax, {glue_mem_upper}
jbe below_glue
mov eax, {glue_mem_upper}
below_glue:
mov dword ptr [{mbi_mem_upper}], eax
add rsi, {start_info_cmd_line}
mov rdi, {cmdline}
mov ecx, {cmdline_size}
cld
rep movsb
mov byte ptr [{cmdline} + {cmdline_size} - 1], 0
mov dword ptr [{mbi_cmdline}], {cmdline_phys}
mov edi, {multiboot_magic}
mov esi, {mbi_phys}
jmp {kernel_entry}
no_iopl:
mov rax, {failure_iopl}
call {pv_fatal}

## pv_identity_map
; Map the first pages of RAM (at most {identity_max_pages}) twice with the glue's own
; tables: at their physical address (L4 slot 0) and at VIRT_BASE + physical (the L3
; entry of the link range, in the builder's L3), pfn p -> mfn_list[p]. Xen refuses a
; writable mapping of a page table, so the pages of the glue's tables and the
; builder's (start_info.pt_base on, nr_pt_frames of them) are mapped read-only, and
; the glue's tables are made read-only in the current mapping before they are linked.
; Clobbers every register but rsp and the flags.
mov rsi, qword ptr [{start_info_ptr}]
mov r12, qword ptr [rsi + {start_info_nr_pages}]
cmp r12, {identity_max_pages}
jbe sized
mov r12, {identity_max_pages}
sized:
mov r13, qword ptr [rsi + {start_info_pt_base}]
sub r13, {virt_base}
shr r13, 12
mov r14, qword ptr [rsi + {start_info_nr_pt_frames}]
add r14, r13
cmp r14, r12
ja too_big
mov r9, qword ptr [{mfn_list_ptr}]
lea rdi, [{identity_l1s}]
xor ecx, ecx
fill:
cmp rcx, r12
jae filled
mov rax, qword ptr [r9 + rcx*8]
shl rax, 12
or rax, {pte_flags}
cmp rcx, r13
jb not_builder_table
cmp rcx, r14
jb read_only
not_builder_table:
mov rdx, rcx
shl rdx, 12
cmp rdx, {pvdata_tables_phys}
jb writable
cmp rdx, {pvdata_tables_end_phys}
jae writable
read_only:
and rax, -3
writable:
mov qword ptr [rdi + rcx*8], rax
inc rcx
jmp fill
filled:
lea rdi, [{identity_l2}]
mov rdx, {identity_l1s_phys}
shr rdx, 12
xor ecx, ecx
link_l1s:
mov rax, rcx
shl rax, 9
cmp rax, r12
jae linked_l1s
mov rax, qword ptr [r9 + rdx*8]
shl rax, 12
or rax, {table_flags}
mov qword ptr [rdi + rcx*8], rax
inc rcx
inc rdx
jmp link_l1s
linked_l1s:
mov rdx, {identity_l2_phys}
shr rdx, 12
mov rax, qword ptr [r9 + rdx*8]
shl rax, 12
or rax, {table_flags}
mov r15, rax
mov qword ptr [{identity_l3}], rax
lea rbx, [{identity_l3}]
mov rdx, {identity_l3_phys}
shr rdx, 12
protect:
cmp rbx, {identity_l1s} + {identity_l1_tables} * 4096
jae protected
mov rsi, qword ptr [r9 + rdx*8]
shl rsi, 12
or rsi, {pte_flags_ro}
mov rdi, rbx
push rdx
mov edx, {uvmf_invlpg}
call {hc_update_va_mapping}
pop rdx
test rax, rax
jne refused
add rbx, 4096
inc rdx
jmp protect
protected:
mov rsi, qword ptr [{start_info_ptr}]
mov rax, qword ptr [rsi + {start_info_pt_base}]
mov rcx, qword ptr [rax + {link_l4_slot} * 8]
mov rax, qword ptr [r9 + r13*8]
shl rax, 12
mov rdx, {identity_l3_phys}
shr rdx, 12
mov rdx, qword ptr [r9 + rdx*8]
shl rdx, 12
or rdx, {table_flags}
xchg rax, rdx
call {pv_mmu_update}
mov eax, {link_l4_slot}
test eax, eax
je done
mov rax, {pte_address_mask}
and rcx, rax
add rcx, {link_l3_slot} * 8
mov rdx, rcx
mov rax, r15
call {pv_mmu_update}
done:
mov edx, {mmuext_tlb_flush_local}
call {pv_mmuext}
ret
too_big:
refused:
mov rax, {failure_map}
call {pv_fatal}

## pv_map_shared_info
; Map the page of .pvdata at {shared_info_page} onto shared_info (start_info's machine
; address): update_va_mapping, once, at the PV entry. The page lies in the glue's
; 2 MiB, whose L1 every L4 the kernel loads shares (pv_glue_range links it), so the
; mapping holds in every address space without a hypercall at each switch.
push rax
push rdi
push rsi
push rdx
mov rsi, qword ptr [{start_info_ptr}]
mov rsi, qword ptr [rsi + {start_info_shared_info}]
or rsi, {pte_flags}
mov rdi, {shared_info_page}
mov edx, {uvmf_invlpg}
call {hc_update_va_mapping}
test rax, rax
jne failed
pop rdx
pop rsi
pop rdi
pop rax
ret
failed:
mov rax, {failure_map}
call {pv_fatal}

## pv_gdt_frames
; set_gdt takes machine frames: the GDT shadow's, through the P2M, once.
push rax
push rcx
push rdx
push r9
mov r9, qword ptr [{mfn_list_ptr}]
mov rdx, {gdt_shadow} - {virt_base}
shr rdx, 12
xor ecx, ecx
frame:
cmp ecx, {gdt_shadow_frames}
jae framed
mov rax, qword ptr [r9 + rdx*8]
mov qword ptr [{gdt_frames} + rcx*8], rax
inc rcx
inc rdx
jmp frame
framed:
pop r9
pop rdx
pop rcx
pop rax
ret

## pv_fatal
; The port cannot go on: rax = one of .pvdata's failure reasons (a u32 length, then
; the text). Print it on the emergency console, then crash the domain (docs/ABI.md).
mov r12, rax
mov edi, {consoleio_write}
mov esi, dword ptr [r12]
lea rdx, [r12 + 4]
call {hc_console_io}
mov edi, {schedop_shutdown}
mov rsi, {shutdown_crash_arg}
call {hc_sched_op}
spin:
jmp spin

## pv_event_check
; Deliver events that became deliverable: the word at {vcpu_pending} is
; pending | mask << 8, so it equals 1 exactly when an event waits and none are masked.
; Any hypercall delivers them on its way back (XEN-ABI64.md 1.5): xen_version(0).
push rcx
movzx ecx, word ptr [{vcpu_pending}]
lea ecx, [rcx - 1]
jrcxz deliver
pop rcx
ret
deliver:
pushfq
push rax
push rdi
push rsi
xor edi, edi
xor esi, esi
call {hc_xen_version}
pop rsi
pop rdi
pop rax
popfq
pop rcx
ret

## pv_pushf_fixup
; [rsp + 8] holds RFLAGS as pushfq stored it (IF is always set under Xen): make its IF
; the virtual one, !upcall_mask.
pushfq
push rax
movzx eax, byte ptr [{vcpu_mask}]
shl eax, {eflags_if_shift}
or qword ptr [rsp + 24], {eflags_if}
xor qword ptr [rsp + 24], rax
pop rax
popfq
ret

## pv_popf_mask
; [rsp + 8] is the RFLAGS value the popfq after this call loads: its IF becomes the
; upcall mask. Flags are clobbered here and restored by that popfq.
push rax
mov rax, qword ptr [rsp + 16]
shr rax, {eflags_if_shift}
and eax, 1
xor eax, 1
mov byte ptr [{vcpu_mask}], al
pop rax
call {pv_event_check}
ret

## pv_trap_common
; Xen delivers an exception or interrupt with the interrupted RCX and R11 above a frame
; the hardware's shape (XEN-ABI64.md 1.5), and a native handler expects the frame
; alone: Linux's xen_pv_trap pops the two before each handler. Here every vector's
; entry in pv_trap_entries is `call pv_trap_common`, whose return address tells the
; vector: restore RCX and R11, leave RSP at the frame and continue in the kernel's
; handler for it (recorded by pv_lidt). Clobbers only the arithmetic flags, which a
; handler does not expect anything of at entry.
pop r11
lea rcx, [{pv_trap_entries} + 5]
sub r11, rcx
lea rcx, [{trap_handlers}]
mov r11, qword ptr [rcx + r11*8]
xchg r11, qword ptr [rsp + 8]
pop rcx
ret

## pv_syscall_entry
; Xen's syscall callback (XEN-ABI64.md 1.4) runs on the kernel stack with RCX and R11
; above a frame of the user's RIP, CS, RFLAGS, RSP and SS; the kernel's LSTAR entry
; expects the bare machine's state: RCX the user's RIP, R11 its RFLAGS, RSP still the
; user's. Give it that (the frame's stack space is free again) and jump there.
pop rcx
pop r11
mov rsp, qword ptr [rsp + 24]
jmp qword ptr [{regs_lstar}]

## pv_syscall32_entry
; The same for a compatibility-mode syscall and the kernel's CSTAR entry.
pop rcx
pop r11
mov rsp, qword ptr [rsp + 24]
jmp qword ptr [{regs_cstar}]

## pv_sysenter_entry
; Xen's sysenter callback: the kernel's SYSENTER_EIP entry expects RSP = SYSENTER_ESP
; (the user's RCX and RDX, which carry its return address by the kernel's convention,
; are as the user left them once RCX is popped).
pop rcx
pop r11
mov rsp, qword ptr [{regs_sysenter_esp}]
jmp qword ptr [{regs_sysenter_eip}]

## pv_iret
; iretq -> HYPERVISOR_iret: push the flags word (0: the IRET path, RCX and R11
; restored) and jump to the hypercall page's entry 23 (XEN-ABI64.md 1.3, Linux's
; xen_iret). A frame that returns to the kernel (RPL 0-2) names the kernel's own
; selectors, which are the bare machine's: give it Xen's flat kernel CS with RPL 0
; (RPL 3 would tell Xen to switch to user mode: XEN-ABI64.md "CS in the frame") and
; Xen's flat kernel SS.
test byte ptr [rsp + 8], 3
jne to_user
mov qword ptr [rsp + 8], {kernel_return_cs}
mov qword ptr [rsp + 32], {kernel_ss}
push 0
jmp {hc_iret}
to_user:
call {pv_user_l4_sync}
push 0
jmp {hc_iret}

## pv_retfq
; retfq (lretq) -> the same far return, a return to the kernel's own code selector
; (RPL 0, which a far return at CPL 3 refuses with #GP: SDM Vol. 2, RET) sent to
; Xen's flat kernel CS instead, as pv_iret does; the flags are kept, as retfq keeps them.
; The kernel's selector is recorded in regs_cs: a read of CS gives it back.
pushfq
test byte ptr [rsp + 16], 3
jne retfq_as_is
push rax
mov rax, qword ptr [rsp + 24]
mov word ptr [{regs_cs}], ax
pop rax
mov qword ptr [rsp + 16], {kernel_cs}
retfq_as_is:
popfq
retfq

## pv_sysret
; sysretq -> HYPERVISOR_iret with VGCF_in_syscall (XEN-ABI64.md 1.3): RCX is the user's
; RIP, R11 its RFLAGS, RSP already its stack. The frame is built on a stack of the
; glue's, not below the user's RSP (whose red zone user code may use); Xen takes
; CS and SS as its flat user selectors on this path, and switches to the user L4,
; which pv_user_l4_sync brings in step first on the PV entry's stack (free since the
; entry; the sync masks events, so no upcall runs on it).
mov qword ptr [{sysret_rsp}], rsp
mov rsp, {pv_stack_top}
call {pv_user_l4_sync}
mov rsp, {sysret_stack_top}
push {user_ss}
push qword ptr [{sysret_rsp}]
push r11
push {user_cs}
push rcx
push {vgcf_in_syscall}
jmp {hc_iret}

## pv_sysexit
; sysexitq -> HYPERVISOR_iret to user RIP = RDX, RSP = RCX, with the current RFLAGS
; (IF the virtual one), flags word 0 (RCX and R11 restored as they are), the user L4
; brought in step first as pv_sysret does.
mov qword ptr [{sysret_rsp}], rsp
mov rsp, {pv_stack_top}
call {pv_user_l4_sync}
mov rsp, {sysret_stack_top}
push {user_ss}
push rcx
pushfq
call {pv_pushf_fixup}
push {user_cs}
push rdx
push 0
jmp {hc_iret}

## pv_hlt
; hlt with the virtual IF set waits for an event (SCHEDOP_block); with it clear nothing
; can wake the CPU, so poll no ports, forever, with events still masked.
pushfq
push rax
push rdi
push rsi
movzx eax, byte ptr [{vcpu_mask}]
test eax, eax
jne masked
mov edi, {schedop_block}
xor esi, esi
call {hc_sched_op}
jmp done
masked:
mov edi, {schedop_poll}
mov rsi, {poll_arg}
call {hc_sched_op}
done:
pop rsi
pop rdi
pop rax
popfq
ret

## pv_write_cr0
; rax = the value the kernel writes to CR0. A change of TS goes to fpu_taskswitch; a
; 64-bit kernel cannot clear PG (long mode needs paging: #GP on the bare machine).
pushfq
push rax
push rcx
push rdi
mov rcx, qword ptr [{regs_cr0}]
mov qword ptr [{regs_cr0}], rax
xor rcx, rax
test ecx, {cr0_ts}
je ts_kept
mov rdi, rax
shr rdi, {cr0_ts_shift}
and edi, 1
call {hc_fpu_taskswitch}
mov rax, qword ptr [{regs_cr0}]
ts_kept:
test eax, {cr0_pg}
je paging_off
pop rdi
pop rcx
pop rax
popfq
ret
paging_off:
mov rax, {failure_paging_off}
call {pv_fatal}

## pv_write_cr3
; rax = the value written to CR3 (an L4's physical address). One mmuext_op with two
; commands, as Linux's xen_write_cr3: NEW_BASEPTR with the kernel L4's frame and
; NEW_USER_BASEPTR with its user L4, a page of the glue's that Xen runs user mode on
; (pv_user_l4_sync says what it holds). Each kernel L4 met has a record of .pvdata
; holding that pair of commands, made when it is first met (pv_user_l4_record); the
; two last loaded, between which a context switch alternates, are compared first, so
; a switch to either is two compares and no argument written. The user L4 is marked
; stale (user_l4_stale names the record): it is brought in step with the kernel L4 on
; the way to user mode, not here, so a switch that never returns to user mode (a
; kernel thread's, or one another switch follows) compares no table, and user mode
; sees the kernel L4 as it is when it is entered. Xen loads the user L4 only when it
; enters user mode, which only HYPERVISOR_iret does, and every path of the glue to it
; syncs first.
; The new L4 must map the glue's own 2 MiB, which the kernel does not know of:
; pv_glue_range links it and remembers the three entries on the way to it, and each
; switch compares the new L4's with them, with loads only, before it relinks. The same
; L4 entry links the same L3, where the remembered L3 entry is read (VIRT_BASE +
; physical, as pv_glue_range found it); the same L3 entry the same L2, where the
; glue's entry is read: a kernel that rewrites any of the three (validated by the
; hypervisor), or builds a new L4 at a frame it used before, fails a compare and is
; linked again. The accessed bit, which the page walk sets, is left out of each compare.
; An upcall's handler may write CR3 while the compares run; the records and the
; remembered entries are only written with events masked (pv_l4_prepare), so a record
; once read stays whole, and a relink in between shows as a new glue_generation, which
; is read before the compares and after: the entries compared are then one link's, or
; the L4 is linked again.
; Keeps the registers and DF; clobbers the arithmetic flags, which a mov to CR3 leaves
; undefined (SDM Vol. 2B, MOV to/from control registers): no pushfq and popfq, whose
; popfq ends the emulator's block. It saves only what mmuext_op may change: rax, the
; result, and rdi, rsi, rdx and r10, its arguments, which Xen's debug builds clobber
; (XEN-ABI64.md 1.2). The hypercall is made here, as the hypercall page's entry makes
; it (rcx and r11 kept around the syscall, whose return by SYSRET overwrites them),
; not through the page: a call and a return fewer, and no page of code to bring back
; into the TLB after each switch (the page is a convenience, not a requirement: Xen's
; docs/guest-guide/x86/hypercall-abi.rst).
push rax
push rdi
push rsi
push rdx
push r10
mov rsi, {pte_address_mask}
and rsi, rax
mov rdi, qword ptr [{user_l4_recent}]
cmp rsi, qword ptr [rdi]
je known
mov rdi, qword ptr [{user_l4_recent} + 8]
cmp rsi, qword ptr [rdi]
jne prepare
known:
mov r10, qword ptr [{glue_generation}]
mov rdx, qword ptr [rdi + {user_l4_virtual}]
mov rdx, qword ptr [rdx + {link_l4_slot} * 8]
or rdx, {page_accessed}
cmp rdx, qword ptr [{glue_l4e}]
jne prepare
mov rdx, qword ptr [{glue_l3e_ptr}]
mov rdx, qword ptr [rdx]
or rdx, {page_accessed}
cmp rdx, qword ptr [{glue_l3e}]
jne prepare
mov rdx, qword ptr [{glue_l2e_ptr}]
mov rdx, qword ptr [rdx]
or rdx, {page_accessed}
cmp rdx, qword ptr [{glue_l2e}]
jne prepare
cmp r10, qword ptr [{glue_generation}]
jne prepare
linked:
mov qword ptr [{regs_cr3}], rax
mov qword ptr [{user_l4_stale}], rdi
add rdi, {user_l4_ops}
mov esi, 2
xor edx, edx
mov r10d, {domid_self}
push rcx
push r11
mov eax, {hypercall_nr_mmuext_op}
syscall
pop r11
pop rcx
test rax, rax
jne refused
pop r10
pop rdx
pop rsi
pop rdi
pop rax
ret
prepare:
call {pv_l4_prepare}
jmp linked
refused:
mov rax, {failure_mmuext}
call {pv_fatal}

## pv_l4_prepare
; rsi = the physical address of a kernel L4 pv_write_cr3 could not load at once (not
; one of the two last loaded, or its glue range not as remembered). Returns in rdi its
; record (pv_user_l4_record), its glue range linked (pv_glue_range). Events are masked
; meanwhile: an upcall's handler could write CR3 and make a record or a link halfway;
; one that became pending is delivered by the mmuext_op that follows. Clobbers rdx and
; the flags.
push rax
movzx eax, byte ptr [{vcpu_mask}]
push rax
mov byte ptr [{vcpu_mask}], 1
call {pv_user_l4_record}
push rsi
mov rsi, qword ptr [rdi + {user_l4_virtual}]
call {pv_glue_range}
pop rsi
pop rax
mov byte ptr [{vcpu_mask}], al
pop rax
ret

## pv_user_l4_record
; rsi = a kernel L4's physical address. Returns in rdi its record: found among those
; in use, or made (the key, the L4's virtual address, the frames of the kernel L4 and
; of the pool's next user L4, through the P2M), and, unless it is one already, makes
; it one of the two recent records in place of the one that is not the L4 being
; left's (regs_cr3 still names that one). More than {user_l4_tables} kernel L4s crash
; the domain. Clobbers rdx and the flags.
push rcx
lea rdi, [{user_l4_records}]
xor ecx, ecx
look:
cmp rcx, qword ptr [{user_l4_count}]
jae make
cmp rsi, qword ptr [rdi]
je found
inc rcx
add rdi, {user_l4_record_size}
jmp look
make:
cmp rcx, {user_l4_tables}
jae full
inc qword ptr [{user_l4_count}]
mov qword ptr [rdi], rsi
mov rdx, {virt_base}
add rdx, rsi
mov qword ptr [rdi + {user_l4_virtual}], rdx
mov rdx, {user_l4_pool_phys}
shr rdx, 12
add rcx, rdx
mov rdx, qword ptr [{mfn_list_ptr}]
mov rcx, qword ptr [rdx + rcx*8]
mov qword ptr [rdi + {user_l4_user_frame}], rcx
mov rcx, rsi
shr rcx, 12
mov rcx, qword ptr [rdx + rcx*8]
mov qword ptr [rdi + {user_l4_kernel_frame}], rcx
found:
mov rdx, qword ptr [{user_l4_recent}]
cmp rdi, rdx
je recent
cmp rdi, qword ptr [{user_l4_recent} + 8]
je recent
mov rcx, {pte_address_mask}
and rcx, qword ptr [{regs_cr3}]
cmp rcx, qword ptr [rdx]
je replace_second
mov qword ptr [{user_l4_recent}], rdi
pop rcx
ret
replace_second:
mov qword ptr [{user_l4_recent} + 8], rdi
recent:
pop rcx
ret
full:
mov rax, {failure_user_l4}
call {pv_fatal}

## pv_user_l4_sync
; On the way to user mode (pv_iret, pv_sysret, pv_sysexit), after a CR3 write: bring
; the user L4 of the kernel L4 in CR3 (the record user_l4_stale names), which Xen is
; about to run user mode on, in step with it. The user L4 holds the kernel L4's slots
; 0-255 and, in its upper slots, a view of the kernel's upper half holding only the
; pages the kernel mapped for user mode (pv_user_view; XEN-ABI64.md 1.1, 1.8), so that
; user mode cannot reach kernel pages although it runs at CPL 3 like the kernel
; (Linux's user PGD does the same with level3_user_vsyscall). It is written entry by
; entry through mmu_update, which Xen validates: its lower half compared with the
; kernel's by repe cmpsq, its upper half redone only when the kernel's upper entries
; differ from those it was last made from (kept in a shadow page per user L4). Events
; are masked meanwhile (an upcall's handler could write CR3 halfway); one that became
; pending is delivered by the HYPERVISOR_iret that follows. Preserves every register
; and the flags.
pushfq
cmp qword ptr [{user_l4_stale}], 0
jne stale
popfq
ret
stale:
push rax
push rbx
push rbp
push rcx
push rdx
push rsi
push rdi
push r8
push r9
push r10
push r12
push r13
push r14
push r15
movzx eax, byte ptr [{vcpu_mask}]
push rax
mov byte ptr [{vcpu_mask}], 1
mov rbx, qword ptr [{user_l4_stale}]
mov r12, qword ptr [rbx + {user_l4_virtual}]
lea rdx, [{user_l4_records}]
sub rbx, rdx
shr rbx, {user_l4_record_shift}
mov r13, rbx
shl r13, 12
lea rdx, [{user_l4_pool}]
add r13, rdx
mov r9, qword ptr [{mfn_list_ptr}]
mov r14, {user_l4_pool_phys}
shr r14, 12
add r14, rbx
mov r14, qword ptr [r9 + r14*8]
shl r14, 12
cld
xor r15d, r15d
sync:
lea rsi, [r12 + r15*8]
lea rdi, [r13 + r15*8]
mov ecx, {user_l4_slots}
sub ecx, r15d
repe cmpsq
je synced
lea r15, [rsi - 8]
sub r15, r12
shr r15, 3
mov rax, qword ptr [r12 + r15*8]
lea rdx, [r14 + r15*8]
call {pv_mmu_update}
inc r15d
jmp sync
synced:
mov rbp, rbx
shl rbp, 12
lea rdi, [{user_l4_shadows}]
add rbp, rdi
lea rdi, [rbp + {first_upper_slot} * 8]
lea rsi, [r12 + {first_upper_slot} * 8]
mov ecx, 512 - {first_upper_slot}
repe cmpsq
je upper_synced
mov r15d, {first_upper_slot}
upper:
cmp r15d, 512
jae upper_done
xor eax, eax
mov rdx, qword ptr [r12 + r15*8]
test dl, 1
je upper_wanted
call {pv_user_view_top}
upper_wanted:
cmp rax, qword ptr [r13 + r15*8]
je upper_same
lea rdx, [r14 + r15*8]
call {pv_mmu_update}
upper_same:
inc r15d
jmp upper
upper_done:
lea rdi, [rbp + {first_upper_slot} * 8]
lea rsi, [r12 + {first_upper_slot} * 8]
mov ecx, 512 - {first_upper_slot}
rep movsq
upper_synced:
mov qword ptr [{user_l4_stale}], 0
pop rax
mov byte ptr [{vcpu_mask}], al
pop r15
pop r14
pop r13
pop r12
pop r10
pop r9
pop r8
pop rdi
pop rsi
pop rdx
pop rcx
pop rbp
pop rbx
pop rax
popfq
ret

## pv_find
; rdi = a table of .pvdata: a u64 count, then that many u64 keys; rax = a key. Returns
; in rcx the count and in rbx the key's index, or the count when it is not there.
; Clobbers the flags.
mov rcx, qword ptr [rdi]
xor ebx, ebx
look:
cmp rbx, rcx
jae done
cmp qword ptr [rdi + rbx*8 + 8], rax
je done
inc rbx
jmp look
done:
ret

## pv_mmu_update
; One HYPERVISOR_mmu_update: rdx = the machine address of the entry, rax = its new
; value; a refusal crashes the domain, naming mmu_update. Clobbers rax, rdi, rsi, rdx,
; r8, r10 and the flags.
mov qword ptr [{mmu_update}], rdx
mov qword ptr [{mmu_update} + 8], rax
mov rdi, {mmu_update}
mov esi, 1
xor edx, edx
mov r10d, {domid_self}
call {hc_mmu_update}
test rax, rax
jne failed
ret
failed:
mov rax, {failure_mmu_update}
call {pv_fatal}

## pv_user_view_top
; rdx = a present entry of a kernel L4's upper half (slots {first_upper_slot}-511). Returns
; in rax the user L4's entry in its place (pv_user_view of the L3 it links), made the
; first time the entry is met and remembered after: the views of a kernel's upper
; half are built once, as Linux builds level3_user_vsyscall once, and later user
; mappings the kernel makes there are not seen (its program text, like Linux's
; vsyscall page, is mapped before its first process). A CR3 write then costs a lookup
; per upper slot, not a walk of every kernel table. Preserves rbx, rbp and r12-r15.
push rbx
lea rdi, [{user_view_top_count}]
mov rax, rdx
call {pv_find}
cmp rbx, rcx
jae build
mov rax, qword ptr [{user_view_top_user} + rbx*8]
pop rbx
ret
build:
cmp rcx, {user_view_tables}
jae full
mov qword ptr [rdi + rcx*8 + 8], rdx
push rcx
mov ecx, 3
call {pv_user_view}
pop rcx
mov qword ptr [{user_view_top_user} + rcx*8], rax
inc rcx
mov qword ptr [{user_view_top_count}], rcx
pop rbx
ret
full:
mov rax, {failure_user_view}
call {pv_fatal}

## pv_user_view
; rdx = a present entry of one of the kernel's tables, linking a table of level ecx
; (1-3) of its upper half. Returns in rax the entry the user L4's view puts in its
; place: the same flags, linking a table of the glue's that maps only the pages under
; it the kernel mapped for user mode (an L1 entry with U that Xen did not mark
; _PAGE_GUEST_KERNEL, XEN-ABI64.md 1.8), kept in step entry by entry with mmu_update;
; 0 when there is no such page and no view yet. A view is found by the kernel table it
; views (the kernel's upper half is shared by its L4s, and so are the views), from a
; pool of {user_view_tables}. Each table is read at VIRT_BASE + its pseudo-physical
; frame, from Xen's M2P. Preserves rbx, rbp and r12-r15; clobbers the rest.
push rbx
push rbp
push r12
push r13
push r14
push r15
mov r15, rdx
mov r14d, ecx
mov rax, {pte_address_mask}
and rdx, rax
shr rdx, 12
mov rax, {m2p}
mov r13, qword ptr [rax + rdx*8]
cmp r13, {identity_max_pages}
jae too_many
shl r13, 12
mov r12, {virt_base}
add r12, r13
lea rdi, [{user_view_count}]
mov rax, r13
call {pv_find}
cmp rbx, rcx
jb entries
mov rbx, -1
entries:
xor ebp, ebp
entry:
cmp ebp, 512
jae viewed
mov rdx, qword ptr [r12 + rbp*8]
test dl, 1
je unwanted
cmp r14d, 1
jne upper_level
test dl, {page_user}
je unwanted
bt rdx, {page_guest_kernel_bit}
jc unwanted
mov rax, rdx
jmp wanted
upper_level:
test dl, {page_large}
jne unwanted
lea ecx, [r14 - 1]
call {pv_user_view}
jmp wanted
unwanted:
xor eax, eax
wanted:
cmp rbx, -1
jne have_view
test rax, rax
je next
mov rcx, qword ptr [{user_view_count}]
cmp rcx, {user_view_tables}
jae too_many
mov qword ptr [{user_view_kernel} + rcx*8], r13
mov rbx, rcx
inc rcx
mov qword ptr [{user_view_count}], rcx
have_view:
mov rsi, rbx
shl rsi, 12
lea rdi, [{user_view_pool}]
add rsi, rdi
cmp qword ptr [rsi + rbp*8], rax
je next
mov r8, rax
call view_machine_address
lea rdx, [rax + rbp*8]
mov rax, r8
call {pv_mmu_update}
next:
inc ebp
jmp entry
viewed:
xor eax, eax
cmp rbx, -1
je done
call view_machine_address
mov rdx, {pte_address_mask}
not rdx
and rdx, r15
or rax, rdx
done:
pop r15
pop r14
pop r13
pop r12
pop rbp
pop rbx
ret
view_machine_address:
mov rax, {user_view_pool_phys}
shr rax, 12
add rax, rbx
mov rdi, qword ptr [{mfn_list_ptr}]
mov rax, qword ptr [rdi + rax*8]
shl rax, 12
ret
too_many:
mov rax, {failure_user_view}
call {pv_fatal}

## pv_glue_range
; rsi = the virtual address (VIRT_BASE + physical) of an L4 the kernel is about to
; load. Make its entry for the glue's 2 MiB at VIRT_BASE + {glue_phys} (.pvdata,
; .pvtext, patch/layout64.py) point at the glue's L1 for it: the identity map's L1
; {glue_l1_table}, in use and validated since the PV entry. The L4's slot and the L3's
; of the link range must be present (the kernel maps its own link range there); each
; table is read at VIRT_BASE + its pseudo-physical frame, found through Xen's read-only
; M2P (XEN-ABI64.md 1.8). An empty L2 entry is written directly: a table the kernel
; has not loaded yet is one of its writable pages (Xen's mmu_update writes such a page
; as plain memory too), and a store to one in use is a validated writable page-table
; update. An entry mapping anything else there crashes the domain. The entries on the
; way and where the last two lie are remembered, accessed bit set (glue_*: what
; pv_write_cr3 compares the next L4 with), and glue_generation counts the links
; (pv_write_cr3 says why; its caller masks events). Clobbers rdx and the flags.
push rax
push rbx
push rcx
inc qword ptr [{glue_generation}]
mov rbx, {m2p}
mov rdx, qword ptr [rsi + {link_l4_slot} * 8]
mov rcx, rdx
or rcx, {page_accessed}
mov qword ptr [{glue_l4e}], rcx
call table
lea rcx, [rdx + {link_l3_slot} * 8]
mov qword ptr [{glue_l3e_ptr}], rcx
mov rdx, qword ptr [rcx]
mov rcx, rdx
or rcx, {page_accessed}
mov qword ptr [{glue_l3e}], rcx
call table
lea rdx, [rdx + {glue_l2_slot} * 8]
mov qword ptr [{glue_l2e_ptr}], rdx
mov rcx, qword ptr [{mfn_list_ptr}]
mov rax, {identity_l1s_phys} + {glue_l1_table} * 4096
shr rax, 12
mov rax, qword ptr [rcx + rax*8]
shl rax, 12
mov rcx, qword ptr [rdx]
test cl, 1
je install
mov rbx, {pte_address_mask}
and rbx, rcx
cmp rbx, rax
jne taken
jmp remember
install:
or rax, {table_flags}
mov qword ptr [rdx], rax
mov rcx, rax
remember:
or rcx, {page_accessed}
mov qword ptr [{glue_l2e}], rcx
pop rcx
pop rbx
pop rax
ret
table:
test dl, 1
je taken
mov rax, {pte_address_mask}
and rdx, rax
shr rdx, 12
mov rdx, qword ptr [rbx + rdx*8]
cmp rdx, {identity_max_pages}
jae taken
shl rdx, 12
mov rax, {virt_base}
add rdx, rax
ret
taken:
mov rax, {failure_glue_range}
call {pv_fatal}

## pv_mmuext
; One HYPERVISOR_mmuext_op: edx = the command, rax = its first argument; a refusal
; crashes the domain. Clobbers rax, rdi, rsi, rdx, r10 and the flags.
mov qword ptr [{mmuext_arg1}], rax
mov dword ptr [{mmuext_cmd}], edx
mov rdi, {mmuext}
mov esi, 1
xor edx, edx
mov r10d, {domid_self}
call {hc_mmuext_op}
test rax, rax
jne failed
ret
failed:
mov rax, {failure_mmuext}
call {pv_fatal}

## pv_write_cr4
; rax = the value written to CR4: recorded; the hypervisor owns the real CR4.
mov qword ptr [{regs_cr4}], rax
ret

## pv_invlpg
; rax = the linear address: HYPERVISOR_mmuext_op(INVLPG_LOCAL).
pushfq
push rax
push rdi
push rsi
push rdx
push r10
mov edx, {mmuext_invlpg_local}
call {pv_mmuext}
pop r10
pop rdx
pop rsi
pop rdi
pop rax
popfq
ret

## pv_lgdt
; rax = the linear address of lgdt's 10-byte pseudo-descriptor. As xen32's: the table
; is copied to the page-aligned shadow without system descriptors (a 64-bit TSS
; descriptor is 16 bytes: its upper half, whose type field reads 0, goes too), then
; HYPERVISOR_set_gdt(frames, entries). A present descriptor past Xen's reserved
; entries cannot be given.
pushfq
push rax
push rbx
push rcx
push rdx
push rsi
push rdi
mov rcx, qword ptr [rax]
mov qword ptr [{regs_gdtr}], rcx
mov cx, word ptr [rax + 8]
mov word ptr [{regs_gdtr} + 8], cx
movzx ecx, word ptr [rax]
inc ecx
shr ecx, 3
mov rsi, qword ptr [rax + 2]
mov ebx, {gdt_shadow_entries}
beyond:
cmp ebx, ecx
jae fits
test dword ptr [rsi + rbx*8 + 4], {desc_hi_present}
jne reserved
inc ebx
jmp beyond
fits:
cmp ecx, {gdt_shadow_entries}
jbe counted
mov ecx, {gdt_shadow_entries}
counted:
mov rdi, {gdt_shadow}
push rcx
copy:
jrcxz copied
mov rax, qword ptr [rsi]
mov rdx, rax
shr rdx, 32
test edx, {desc_hi_s}
jne keep
xor eax, eax
keep:
mov qword ptr [rdi], rax
add rsi, 8
add rdi, 8
dec ecx
jmp copy
copied:
pop rsi
push rdi
push r10
mov rdi, {gdt_frames}
call {hc_set_gdt}
pop r10
pop rdi
test rax, rax
jne failed
pop rdi
pop rsi
pop rdx
pop rcx
pop rbx
pop rax
popfq
ret
reserved:
mov rax, {failure_gdt_reserved}
call {pv_fatal}
failed:
mov rax, {failure_set_gdt}
call {pv_fatal}

## pv_sgdt
; rax = where sgdt stores: the 10-byte pseudo-descriptor the kernel last loaded.
push rcx
mov rcx, qword ptr [{regs_gdtr}]
mov qword ptr [rax], rcx
mov cx, word ptr [{regs_gdtr} + 8]
mov word ptr [rax + 8], cx
pop rcx
ret

## pv_sidt
; rax = where sidt stores: the 10-byte pseudo-descriptor the kernel last loaded.
push rcx
mov rcx, qword ptr [{regs_idtr}]
mov qword ptr [rax], rcx
mov cx, word ptr [{regs_idtr} + 8]
mov word ptr [rax + 8], cx
pop rcx
ret

## pv_lidt
; rax = the linear address of lidt's pseudo-descriptor. Each present 64-bit interrupt
; or trap gate (16 bytes) becomes a 16-byte trap_info: vector, flags (the gate's DPL,
; 0 raised to 1 so the kernel itself may raise it: on 64-bit 1 or 2 means the kernel,
; XEN-ABI64.md 1.5; an interrupt gate masks events on entry), Xen's kernel CS, and
; the vector's entry in pv_trap_entries, the gate's own offset kept for
; pv_trap_common. The table replaces the old one (a NULL handle clears it first).
pushfq
push rax
push rbx
push rcx
push rdx
push rsi
push rdi
push rbp
push r8
push r10
mov rcx, qword ptr [rax]
mov qword ptr [{regs_idtr}], rcx
mov cx, word ptr [rax + 8]
mov word ptr [{regs_idtr} + 8], cx
movzx ecx, word ptr [rax]
inc ecx
shr ecx, 4
cmp ecx, 256
jbe counted
mov ecx, 256
counted:
mov rsi, qword ptr [rax + 2]
mov rdi, {trap_info}
xor ebx, ebx
gate:
cmp ebx, ecx
jae converted
mov rax, rbx
shl rax, 4
mov edx, dword ptr [rsi + rax + 4]
test edx, {desc_hi_present}
je next
mov ebp, edx
shr ebp, {desc_hi_type_shift}
and ebp, {gate32_types}
cmp ebp, {gate32_types}
jne next
mov byte ptr [rdi], bl
mov ebp, edx
shr ebp, {desc_hi_dpl_shift}
and ebp, 3
jne dpl_ok
mov ebp, 1
dpl_ok:
test edx, {desc_hi_trap_gate}
jne trap_gate
or ebp, {ti_mask_events}
trap_gate:
mov r8d, ebp
mov byte ptr [rdi + 1], r8b
mov word ptr [rdi + 2], {kernel_cs}
mov dword ptr [rdi + 4], 0
mov r8d, dword ptr [rsi + rax + 8]
shl r8, 32
and edx, 0xffff0000
or r8, rdx
movzx edx, word ptr [rsi + rax]
or r8, rdx
lea rdx, [rbx + rbx*4]
lea rbp, [{trap_handlers}]
mov qword ptr [rbp + rdx*8], r8
lea rbp, [{pv_trap_entries}]
add rdx, rbp
mov qword ptr [rdi + 8], rdx
add rdi, 16
next:
inc ebx
jmp gate
converted:
mov qword ptr [rdi], 0
mov qword ptr [rdi + 8], 0
xor edi, edi
call {hc_set_trap_table}
mov rdi, {trap_info}
call {hc_set_trap_table}
test rax, rax
jne failed
pop r10
pop r8
pop rbp
pop rdi
pop rsi
pop rdx
pop rcx
pop rbx
pop rax
popfq
ret
failed:
mov rax, {failure_set_trap_table}
call {pv_fatal}

## pv_ltr
; rax = the TSS selector: its 16-byte descriptor in the kernel's GDT gives the 64-bit
; TSS, whose RSP0 becomes the kernel stack: HYPERVISOR_stack_switch(FLAT_KERNEL_SS,
; RSP0). Its address is kept in regs_tss_base.
pushfq
push rax
push rcx
push rdx
push rdi
push rsi
mov word ptr [{regs_tr}], ax
and eax, 0xfff8
add rax, qword ptr [{regs_gdtr} + 2]
mov ecx, dword ptr [rax + 2]
and ecx, 0xffffff
movzx edx, byte ptr [rax + 7]
shl edx, 24
or ecx, edx
mov edx, dword ptr [rax + 8]
shl rdx, 32
or rcx, rdx
mov qword ptr [{regs_tss_base}], rcx
mov edi, {kernel_ss}
mov rsi, qword ptr [rcx + {tss_rsp0}]
call {hc_stack_switch}
test rax, rax
jne failed
pop rsi
pop rdi
pop rdx
pop rcx
pop rax
popfq
ret
failed:
mov rax, {failure_stack_switch}
call {pv_fatal}

## pv_lldt
; rax = the LDT selector. Only the null LDT (the usual `lldt 0`) is supported.
mov word ptr [{regs_ldtr}], ax
test ax, 0xfffc
jne unsupported
ret
unsupported:
mov rax, {failure_ldt}
call {pv_fatal}

## pv_clts
; clts: the virtual CR0.TS is cleared and Xen told (HYPERVISOR_fpu_taskswitch(0)).
pushfq
push rax
push rdi
and qword ptr [{regs_cr0}], {not_cr0_ts}
xor edi, edi
call {hc_fpu_taskswitch}
pop rdi
pop rax
popfq
ret

## pv_lmsw
; rax = lmsw's operand: CR0's MP, EM and TS are replaced; PE can be set, never cleared.
pushfq
push rax
push rcx
and eax, 0xf
mov rcx, qword ptr [{regs_cr0}]
and rcx, -15
or rax, rcx
call {pv_write_cr0}
pop rcx
pop rax
popfq
ret

## pv_wrmsr
; wrmsr: ecx = the MSR, edx:eax the value. The MSRs whose job Xen does through
; hypercalls become those hypercalls (Linux's xen_write_msr_safe, XEN-ABI64.md 1.4,
; 1.7): the segment bases -> set_segment_base, the system-call entries -> callback_op
; register (masking events, as SFMASK's IF would) of the glue's entries, which give the
; kernel's own entry the bare machine's state. STAR, SFMASK and the SYSENTER CS and ESP
; are recorded (Xen owns the real ones; the callbacks replace them); any other MSR is
; written by wrmsr itself, which Xen emulates after the #GP (1.6).
pushfq
push rax
push rdi
push rsi
push rdx
push r10
shl rdx, 32
mov esi, eax
or rsi, rdx
cmp ecx, {msr_fs_base}
je fs_base
cmp ecx, {msr_gs_base}
je gs_base
cmp ecx, {msr_kernel_gs_base}
je kernel_gs_base
cmp ecx, {msr_lstar}
je lstar
cmp ecx, {msr_cstar}
je cstar
cmp ecx, {msr_ia32_sysenter_eip}
je sysenter_eip
cmp ecx, {msr_star}
je star
cmp ecx, {msr_sfmask}
je sfmask
cmp ecx, {msr_ia32_sysenter_cs}
je sysenter_cs
cmp ecx, {msr_ia32_sysenter_esp}
je sysenter_esp
pop r10
pop rdx
pop rsi
pop rdi
pop rax
wrmsr
popfq
ret
fs_base:
mov qword ptr [{regs_fs_base}], rsi
mov edi, {segbase_fs}
jmp segment_base
gs_base:
mov qword ptr [{regs_gs_base}], rsi
mov edi, {segbase_gs_kernel}
jmp segment_base
kernel_gs_base:
mov qword ptr [{regs_kernel_gs_base}], rsi
mov edi, {segbase_gs_user}
segment_base:
call {hc_set_segment_base}
test rax, rax
jne base_refused
jmp done
lstar:
mov qword ptr [{regs_lstar}], rsi
mov edi, {callbacktype_syscall}
mov rsi, {pv_syscall_entry}
jmp callback
cstar:
mov qword ptr [{regs_cstar}], rsi
mov edi, {callbacktype_syscall32}
mov rsi, {pv_syscall32_entry}
jmp callback
sysenter_eip:
mov qword ptr [{regs_sysenter_eip}], rsi
mov edi, {callbacktype_sysenter}
mov rsi, {pv_sysenter_entry}
callback:
mov word ptr [{callback_type}], di
mov word ptr [{callback_type} + 2], {callbackf_mask_events}
mov qword ptr [{callback_address}], rsi
mov edi, {callbackop_register}
mov rsi, {callback}
call {hc_callback_op}
test rax, rax
jne callback_refused
jmp done
star:
mov qword ptr [{regs_star}], rsi
jmp done
sysenter_cs:
mov qword ptr [{regs_sysenter_cs}], rsi
jmp done
sysenter_esp:
mov qword ptr [{regs_sysenter_esp}], rsi
jmp done
sfmask:
mov qword ptr [{regs_sfmask}], rsi
done:
pop r10
pop rdx
pop rsi
pop rdi
pop rax
popfq
ret
base_refused:
mov rax, {failure_segment_base}
call {pv_fatal}
callback_refused:
mov rax, {failure_callback}
call {pv_fatal}

## pv_rdmsr
; rdmsr: ecx = the MSR, into edx:eax. What pv_wrmsr recorded or turned into a
; hypercall reads back what the kernel wrote; the rest is Xen's rdmsr emulation.
pushfq
cmp ecx, {msr_fs_base}
je fs_base
cmp ecx, {msr_gs_base}
je gs_base
cmp ecx, {msr_kernel_gs_base}
je kernel_gs_base
cmp ecx, {msr_lstar}
je lstar
cmp ecx, {msr_star}
je star
cmp ecx, {msr_sfmask}
je sfmask
cmp ecx, {msr_cstar}
je cstar
cmp ecx, {msr_ia32_sysenter_cs}
je sysenter_cs
cmp ecx, {msr_ia32_sysenter_esp}
je sysenter_esp
cmp ecx, {msr_ia32_sysenter_eip}
je sysenter_eip
rdmsr
popfq
ret
cstar:
mov rax, qword ptr [{regs_cstar}]
jmp split
sysenter_cs:
mov rax, qword ptr [{regs_sysenter_cs}]
jmp split
sysenter_esp:
mov rax, qword ptr [{regs_sysenter_esp}]
jmp split
sysenter_eip:
mov rax, qword ptr [{regs_sysenter_eip}]
jmp split
fs_base:
mov rax, qword ptr [{regs_fs_base}]
jmp split
gs_base:
mov rax, qword ptr [{regs_gs_base}]
jmp split
kernel_gs_base:
mov rax, qword ptr [{regs_kernel_gs_base}]
jmp split
lstar:
mov rax, qword ptr [{regs_lstar}]
jmp split
star:
mov rax, qword ptr [{regs_star}]
jmp split
sfmask:
mov rax, qword ptr [{regs_sfmask}]
split:
mov rdx, rax
shr rdx, 32
mov eax, eax
popfq
ret

## pv_wrfsbase
; rax = the new FS base: set_segment_base(SEGBASE_FS).
pushfq
push rcx
push rdx
mov rdx, rax
shr rdx, 32
mov ecx, {msr_fs_base}
call {pv_wrmsr}
pop rdx
pop rcx
popfq
ret

## pv_wrgsbase
; rax = the new (kernel-mode) GS base: set_segment_base(SEGBASE_GS_KERNEL).
pushfq
push rcx
push rdx
mov rdx, rax
shr rdx, 32
mov ecx, {msr_gs_base}
call {pv_wrmsr}
pop rdx
pop rcx
popfq
ret
