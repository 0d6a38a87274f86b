; patches/xen32/glue.asm: the glue a kernel ported by xen32 calls.
;
; Each `## name` starts a function; the patcher assembles them with keystone into the
; image's .pvtext section and checks every encoding with capstone. {names} are filled
; from pvtool's ABI data: hc_NAME is hypercall NAME's entry in the hypercall page, the
; vcpu_* fields live in the hypervisor's fixed shared_info mapping, the regs_* fields,
; mbi, mmuext, the argument blocks and the GDT shadow in .pvdata.
; Unless a function says otherwise it preserves every register and the flags, since it
; replaces an instruction the kernel did not expect to clobber anything.

## pv_entry
; Xen enters here (ELF note ENTRY) with esi = start_info. Give the kernel the state a
; Multiboot loader would: eax = the magic, ebx = an information structure. Once on the
; identity map, start_info is at its physical address (the builder maps it at
; VIRT_BASE + physical, like the kernel), as a Multiboot loader's data is. The stack
; is the glue's own: the builder's is mapped at the kernel's link address only, and
; the identity map pv_identity_map switches to covers physical addresses only.
mov esp, {pv_stack_top}
mov dword ptr [{start_info_ptr}], esi
mov ebx, {physdevop_set_iopl}
mov ecx, {iopl_arg}
call {hc_physdev_op}
test eax, eax
jne failed
push esi
call {pv_identity_map}
pop esi
sub esi, {virt_base}
mov eax, dword ptr [esi + {start_info_nr_pages}]
shl eax, 2
sub eax, 1024
mov dword ptr [{mbi_mem_upper}], eax
mov eax, dword ptr [esi + {start_info_mb_cmdline}]
mov dword ptr [{mbi_cmdline}], eax
mov eax, dword ptr [esi + {start_info_mb_mods_count}]
mov dword ptr [{mbi_mods_count}], eax
mov eax, dword ptr [esi + {start_info_mb_mods_addr}]
mov dword ptr [{mbi_mods_addr}], eax
mov eax, {multiboot_magic}
mov ebx, {mbi}
jmp {kernel_entry}
failed:
mov eax, {failure_iopl}
call {pv_fatal}

## pv_identity_map
; While the kernel believes paging is off it may touch any of its RAM at its physical
; address: give it an identity map in tables of the glue's own, at the top of the
; low-memory hole (which the kernel never allocates), and leave the builder's tables,
; which sit after the kernel where its allocator will reuse the pages. A higher-half
; kernel's RAM is mapped at VIRT_BASE too: a detour returns to the link address of the
; code it left (its jumps are linked there), and the kernel may already run there
; while it believes paging is off; the identity slots are linked last, so they win
; where the two overlap. esi = start_info. Clobbers every register but esp and ebp.
mov eax, dword ptr [esi + {start_info_nr_pages}]
cmp eax, {identity_max_pages}
jbe sized
mov eax, {identity_max_pages}
sized:
mov edi, {identity_l1s}
mov ecx, 0
fill:
cmp ecx, eax
jae filled
mov edx, ecx
shl edx, 12
or edx, {identity_pte_flags}
mov dword ptr [edi + ecx*4], edx
inc ecx
jmp fill
filled:
add eax, 1023
shr eax, 10
mov edi, {identity_l2_high}
call link
mov edi, {identity_l2}
call link
mov eax, {identity_l2_phys}
call {pv_switch_base}
ret
link:
; Link eax L1s from the L2 entry at edi on.
mov edx, {identity_l1s_phys}
or edx, {identity_pde_flags}
mov ecx, 0
link_next:
cmp ecx, eax
jae linked
mov dword ptr [edi + ecx*4], edx
add edx, 4096
inc ecx
jmp link_next
linked:
ret

## pv_fatal
; The port cannot go on: eax = one of .pvdata's failure reasons (a u32 length, then
; the text). Print it on the emergency console, then crash the domain, as Linux's
; BUG() would; the crash carries the printed line (docs/ABI.md).
mov ecx, dword ptr [eax]
lea edx, [eax + 4]
mov ebx, {consoleio_write}
call {hc_console_io}
mov ebx, {schedop_shutdown}
mov ecx, {shutdown_crash_arg}
call {hc_sched_op}
spin:
jmp spin

## pv_event_check
; Deliver events that became deliverable: the word at {vcpu_pending} is
; pending | mask << 8, so it equals 1 exactly when an event waits and none are masked.
push ecx
movzx ecx, word ptr [{vcpu_pending}]
lea ecx, [ecx - 1]
jecxz deliver
pop ecx
ret
deliver:
pushfd
pushal
mov ebx, 0
mov ecx, 0
call {hc_xen_version}
popal
popfd
pop ecx
ret

## pv_pushf_fixup
; [esp + 4] holds EFLAGS as pushfd stored it (IF is always set in ring 1 under Xen):
; make its IF the virtual one, !upcall_mask.
pushfd
push eax
movzx eax, byte ptr [{vcpu_mask}]
shl eax, 9
or dword ptr [esp + 12], 0x200
xor dword ptr [esp + 12], eax
pop eax
popfd
ret

## pv_popf_mask
; [esp + 4] is the EFLAGS value the popfd after this call loads: its IF becomes the
; upcall mask. Flags are clobbered here and restored by that popfd.
push eax
mov eax, dword ptr [esp + 8]
shr eax, 9
and eax, 1
xor eax, 1
mov byte ptr [{vcpu_mask}], al
pop eax
call {pv_event_check}
ret

## pv_iret
; HYPERVISOR_iret: an iret frame of a ring-0 kernel names its ring-0 CS; under Xen the
; kernel runs in ring 1, so give the selector RPL 1 (RPL 3 frames stay as they are).
or dword ptr [esp + 4], 1
jmp {hc_iret}

## pv_hlt
; hlt with the virtual IF set waits for an event (SCHEDOP_block); with it clear nothing
; can wake the CPU, so poll no ports, forever, with events still masked.
pushfd
pushal
movzx eax, byte ptr [{vcpu_mask}]
test eax, eax
jne masked
mov ebx, {schedop_block}
mov ecx, 0
call {hc_sched_op}
jmp done
masked:
mov ebx, {schedop_poll}
mov ecx, {poll_arg}
call {hc_sched_op}
done:
popal
popfd
ret

## pv_write_cr0
; eax = the value the kernel writes to CR0.
pushfd
pushal
mov ecx, dword ptr [{regs_cr0}]
mov dword ptr [{regs_cr0}], eax
mov edx, eax
xor edx, ecx
test edx, {cr0_ts}
je ts_kept
push eax
push ecx
mov ebx, eax
shr ebx, {cr0_ts_shift}
and ebx, 1
call {hc_fpu_taskswitch}
pop ecx
pop eax
ts_kept:
test ecx, {cr0_pg}
jne was_on
test eax, {cr0_pg}
je done
mov eax, dword ptr [{regs_cr3}]
call {pv_switch_base}
jmp done
was_on:
test eax, {cr0_pg}
jne done
mov eax, {failure_paging_off}
call {pv_fatal}
done:
popal
popfd
ret

## pv_write_cr3
; eax = the value written to CR3. While the kernel believes paging is off the value
; only waits for CR0.PG; after that every write switches address spaces
; (pv_switch_base's hypercall, made here: a call less on a context switch's path).
; Clobbers the arithmetic flags, which a mov to CR3 leaves undefined (SDM Vol. 2B, MOV
; to/from control registers): no pushfd and popfd, whose popfd ends the emulator's
; translation block.
mov dword ptr [{regs_cr3}], eax
test dword ptr [{regs_cr0}], {cr0_pg}
je done
pushal
shr eax, 12
mov edx, {mmuext_new_baseptr}
call {pv_mmuext}
popal
done:
ret

## pv_switch_base
; eax = a page directory's physical address: HYPERVISOR_mmuext_op(NEW_BASEPTR). Clobbers
; eax, ebx, ecx, edx, esi and the flags.
shr eax, 12
mov edx, {mmuext_new_baseptr}
call {pv_mmuext}
ret

## pv_mmuext
; One HYPERVISOR_mmuext_op: edx = the command, eax = its first argument; a refusal
; crashes the domain. Clobbers eax, ebx, ecx, edx, esi and the flags.
mov dword ptr [{mmuext_arg1}], eax
mov dword ptr [{mmuext_cmd}], edx
mov ebx, {mmuext}
mov ecx, 1
mov edx, 0
mov esi, {domid_self}
call {hc_mmuext_op}
test eax, eax
jne failed
ret
failed:
mov eax, {failure_mmuext}
call {pv_fatal}

## pv_write_cr4
; eax = the value written to CR4: recorded; the hypervisor owns the paging features.
mov dword ptr [{regs_cr4}], eax
ret

## pv_invlpg
; eax = the linear address: HYPERVISOR_mmuext_op(INVLPG_LOCAL). invlpg changes no flag:
; they are kept in edi meanwhile (lahf: SF, ZF, AF, PF, CF; seto: OF; add al, 0x7f
; sets OF again from al = 1), not with pushfd and popfd, whose popfd ends the
; emulator's translation block.
pushal
mov edi, eax
lahf
seto al
xchg eax, edi
mov edx, {mmuext_invlpg_local}
call {pv_mmuext}
mov eax, edi
add al, 0x7f
sahf
popal
ret

## pv_lgdt
; eax = the linear address of lgdt's pseudo-descriptor. Xen takes a GDT by whole frames,
; at most {gdt_shadow_entries} entries (FIRST_RESERVED_GDT_ENTRY: its own lie above),
; and refuses system descriptors other than call gates: copy the table to the
; page-aligned shadow without them, then HYPERVISOR_set_gdt(frames, entries). Entries
; past the shadow cannot be given: a GDT with a present one there is refused.
pushfd
pushal
mov ecx, dword ptr [eax]
mov dword ptr [{regs_gdtr}], ecx
mov cx, word ptr [eax + 4]
mov word ptr [{regs_gdtr} + 4], cx
movzx ecx, word ptr [eax]
inc ecx
shr ecx, 3
mov esi, dword ptr [eax + 2]
mov ebx, {gdt_shadow_entries}
beyond:
cmp ebx, ecx
jae fits
test dword ptr [esi + ebx*8 + 4], {desc_hi_present}
jne reserved
inc ebx
jmp beyond
fits:
cmp ecx, {gdt_shadow_entries}
jbe counted
mov ecx, {gdt_shadow_entries}
counted:
mov edi, {gdt_shadow}
push ecx
copy:
jecxz copied
mov eax, dword ptr [esi]
mov edx, dword ptr [esi + 4]
test edx, {desc_hi_s}
jne keep
mov ebx, edx
and ebx, {desc_hi_type}
cmp ebx, {desc_hi_call_gate}
je keep
mov eax, 0
mov edx, 0
keep:
mov dword ptr [edi], eax
mov dword ptr [edi + 4], edx
add esi, 8
add edi, 8
dec ecx
jmp copy
copied:
pop ecx
mov ebx, {gdt_frames}
call {hc_set_gdt}
test eax, eax
jne failed
popal
popfd
ret
reserved:
mov eax, {failure_gdt_reserved}
call {pv_fatal}
failed:
mov eax, {failure_set_gdt}
call {pv_fatal}

## pv_sgdt
; eax = where sgdt stores: the pseudo-descriptor the kernel last loaded.
push ecx
mov ecx, dword ptr [{regs_gdtr}]
mov dword ptr [eax], ecx
mov cx, word ptr [{regs_gdtr} + 4]
mov word ptr [eax + 4], cx
pop ecx
ret

## pv_sidt
; eax = where sidt stores: the pseudo-descriptor the kernel last loaded.
push ecx
mov ecx, dword ptr [{regs_idtr}]
mov dword ptr [eax], ecx
mov cx, word ptr [{regs_idtr} + 4]
mov word ptr [eax + 4], cx
pop ecx
ret

## pv_lidt
; eax = the linear address of lidt's pseudo-descriptor. Each present 32-bit interrupt
; or trap gate becomes a trap_info entry (DPL 0 raised to the kernel's ring 1; an
; interrupt gate masks events on entry), and the table replaces the old one.
pushfd
pushal
mov ecx, dword ptr [eax]
mov dword ptr [{regs_idtr}], ecx
mov cx, word ptr [eax + 4]
mov word ptr [{regs_idtr} + 4], cx
movzx ecx, word ptr [eax]
inc ecx
shr ecx, 3
cmp ecx, 256
jbe counted
mov ecx, 256
counted:
mov esi, dword ptr [eax + 2]
mov edi, {trap_info}
mov ebx, 0
gate:
cmp ebx, ecx
jae converted
mov eax, dword ptr [esi + ebx*8]
mov edx, dword ptr [esi + ebx*8 + 4]
test edx, {desc_hi_present}
je next
mov ebp, edx
shr ebp, {desc_hi_type_shift}
and ebp, {gate32_types}
cmp ebp, {gate32_types}
jne next
mov byte ptr [edi], bl
mov ebp, edx
shr ebp, {desc_hi_dpl_shift}
and ebp, 3
jne dpl_ok
mov ebp, {kernel_rpl}
dpl_ok:
test edx, {desc_hi_trap_gate}
jne trap_gate
or ebp, {ti_mask_events}
trap_gate:
push edx
mov edx, ebp
mov byte ptr [edi + 1], dl
pop edx
mov ebp, eax
shr ebp, 16
mov word ptr [edi + 2], bp
and edx, 0xffff0000
and eax, 0xffff
or eax, edx
mov dword ptr [edi + 4], eax
add edi, 8
next:
inc ebx
jmp gate
converted:
mov dword ptr [edi], 0
mov dword ptr [edi + 4], 0
mov ebx, 0
call {hc_set_trap_table}
mov ebx, {trap_info}
call {hc_set_trap_table}
test eax, eax
jne failed
popal
popfd
ret
failed:
mov eax, {failure_set_trap_table}
call {pv_fatal}

## pv_ltr
; eax = the TSS selector: its descriptor in the kernel's GDT gives the TSS, whose
; SS0:ESP0 becomes the kernel stack (HYPERVISOR_stack_switch); its address is kept in
; regs_tss_base, where the hypervisor reads ESP0 afresh on every trap from ring 3.
pushfd
pushal
mov word ptr [{regs_tr}], ax
and eax, 0xfff8
add eax, dword ptr [{regs_gdtr} + 2]
mov ecx, dword ptr [eax + 2]
and ecx, 0xffffff
movzx edx, byte ptr [eax + 7]
shl edx, 24
or ecx, edx
mov dword ptr [{regs_tss_base}], ecx
mov ebx, dword ptr [ecx + 8]
and ebx, 0xffff
mov ecx, dword ptr [ecx + 4]
call {hc_stack_switch}
test eax, eax
jne failed
popal
popfd
ret
failed:
mov eax, {failure_stack_switch}
call {pv_fatal}

## pv_lldt
; eax = the LDT selector. Only the null LDT (the usual `lldt 0`) is supported.
mov word ptr [{regs_ldtr}], ax
test ax, 0xfffc
jne unsupported
ret
unsupported:
mov eax, {failure_ldt}
call {pv_fatal}

## pv_clts
; clts: the virtual CR0.TS is cleared and Xen told (HYPERVISOR_fpu_taskswitch(0)).
pushfd
pushal
and dword ptr [{regs_cr0}], {not_cr0_ts}
mov ebx, 0
call {hc_fpu_taskswitch}
popal
popfd
ret

## pv_lmsw
; eax = lmsw's operand: CR0's MP, EM and TS are replaced; PE can be set, never cleared.
pushfd
push eax
push ecx
and eax, 0xf
mov ecx, dword ptr [{regs_cr0}]
and ecx, 0xfffffff1
or eax, ecx
call {pv_write_cr0}
pop ecx
pop eax
popfd
ret
