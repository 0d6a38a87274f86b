// xenhello64: a small kernel written for Xen's 64-bit PV ABI, in the manner of a
// Xen port. It runs in ring 3, beside its own user program, and calls the
// hypervisor only through its hypercall page: it maps shared_info, takes traps
// (int3, and a page fault whose address it reads from vcpu_info), a timer event
// through its event channel, sets its segment bases, builds a user address space
// and enters ring 3 with HYPERVISOR_iret, takes the program's system calls through
// the syscall callback, writes on both consoles and powers off.

#include "xen.h"
#include "user.h"

extern char int3_entry[], page_fault_entry[], event_entry[], failsafe_entry[];
extern char syscall_entry[], user_program[];
long enter_user(u64 rip, u64 rsp);
void leave_user(long status) __attribute__((noreturn));

// A hypercall: `call hypercall_page + 32 * n` with arguments in RDI, RSI, RDX, R10
// and R8, the result in RAX; the page's entry saves RCX and R11 around its syscall.
// Xen may clobber the argument registers (XEN-ABI64.md 1.2).
#define hypercall(n, a1, a2, a3, a4, a5) ({                                      \
  long __res;                                                                    \
  u64 __a1 = (u64)(a1), __a2 = (u64)(a2), __a3 = (u64)(a3);                      \
  register u64 __a4 asm("r10") = (u64)(a4);                                      \
  register u64 __a5 asm("r8") = (u64)(a5);                                       \
  asm volatile("call hypercall_page + %c[off]"                                   \
               : "=a"(__res), "+D"(__a1), "+S"(__a2), "+d"(__a3), "+r"(__a4),    \
                 "+r"(__a5)                                                      \
               : [off] "i"((n) * 32)                                             \
               : "memory");                                                      \
  __res; })

#define PAGE_SHIFT 12
#define PAGE_SIZE  4096
#define NPTE       512
#define PTX(level, va) (((u64)(va) >> (PAGE_SHIFT + 9 * (level))) & (NPTE - 1))

// Xen's read-only machine-to-physical table in L4 slot 256, readable by the guest
// (XEN-ABI64.md 1.8): the pfn of every mfn.
static const volatile u64 *const machine_to_phys = (const u64 *)HV_START_LOW;

#define KERNEL_GS_WORD 0x6b65726e656c6773  // "sglenrek": the kernel's GS block
#define USER_GS_WORD   0x7573657267730a00  // what ring 3 finds at GS:0

static struct start_info *si;
static volatile struct shared_info *shared;
static char shared_page[PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));
static volatile u64 fault_page[NPTE] __attribute__((aligned(PAGE_SIZE)));
static const u64 kernel_gs_block = KERNEL_GS_WORD;
static volatile int int3_count, faults, timer_events;
static volatile u64 fault_address, fault_error;
static u32 timer_port;

// The user address space: its tables, its stack, and a stack for the kernel while
// it serves ring 3's system calls.
static u64 user_l4[NPTE] __attribute__((aligned(PAGE_SIZE)));
static u64 user_l3[NPTE] __attribute__((aligned(PAGE_SIZE)));
static u64 user_l2[NPTE] __attribute__((aligned(PAGE_SIZE)));
static u64 user_l1[NPTE] __attribute__((aligned(PAGE_SIZE)));
static u64 user_stack[NPTE] __attribute__((aligned(PAGE_SIZE)));
static char syscall_stack[2 * PAGE_SIZE] __attribute__((aligned(16)));
static volatile u64 user_gs_seen, kernel_gs_in_callback;

// ---- output: console_io, and the PV console ring ------------------------------------
static u64
strlen(const char *s)
{
  u64 n = 0;

  while (s[n])
    n++;
  return n;
}

static void
write(const char *s, u64 n)
{
  hypercall(__HYPERVISOR_console_io, CONSOLEIO_write, n, s, 0, 0);
}

static void
print(const char *s)
{
  write(s, strlen(s));
}

static void
printnum(const char *before, u64 x, const char *after)
{
  char buf[24], *p = buf + sizeof(buf);

  *--p = 0;
  do {
    *--p = '0' + x % 10;
    x /= 10;
  } while (x);
  print(before);
  print(p);
  print(after);
}

static void
shutdown(u32 reason)
{
  hypercall(__HYPERVISOR_sched_op, SCHEDOP_shutdown, &reason, 0, 0, 0);
}

// ---- memory: pseudo-physical and machine frames ---------------------------------------
// The image is mapped at VIRT_BASE + its pseudo-physical address (PADDR_OFFSET 0).
static u64
virt_to_mfn(const volatile void *va)
{
  const u64 *p2m = (const u64 *)si->mfn_list;

  return p2m[((u64)va - VIRT_BASE) >> PAGE_SHIFT];
}

static void *
mfn_to_virt(u64 mfn)
{
  return (void *)(VIRT_BASE + (machine_to_phys[mfn] << PAGE_SHIFT));
}

static long
map_page(const volatile void *va, u64 mfn, u64 flags)
{
  return hypercall(__HYPERVISOR_update_va_mapping, va, mfn << PAGE_SHIFT | flags,
                   UVMF_INVLPG, 0, 0);
}

static void
ring_write(const char *s)
{
  volatile struct xencons_interface *ring = mfn_to_virt(si->console_mfn);
  u32 prod = ring->out_prod, n = strlen(s), port = si->console_evtchn;

  for (u32 i = 0; i < n; i++)
    ring->out[(prod + i) & (sizeof(ring->out) - 1)] = s[i];
  asm volatile("" ::: "memory");  // the bytes before the index (x86 keeps store order)
  ring->out_prod = prod + n;
  hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_send, &port, 0, 0, 0);
}

// ---- shared_info, traps and events ------------------------------------------------------
static void
map_shared_info(void)
{
  long r = hypercall(__HYPERVISOR_update_va_mapping, shared_page,
                     si->shared_info | PTE_P | PTE_W | PTE_A | PTE_D, UVMF_INVLPG, 0, 0);

  shared = (volatile struct shared_info *)shared_page;
  printnum("shared_info: mapped (", r, ")");
  printnum(", upcall mask ", shared->vcpu_info[0].evtchn_upcall_mask, "\n");
}

void
int3_trap(void)
{
  int3_count++;
}

// The only page that may fault is fault_page, which take_a_page_fault unmapped:
// map it again, and the faulting read runs again when the handler returns.
void
page_fault(u64 error)
{
  faults++;
  fault_address = shared->vcpu_info[0].cr2;
  fault_error = error;
  if (fault_address != (u64)fault_page || faults > 1) {
    print("xenhello64: unexpected page fault\n");
    shutdown(SHUTDOWN_crash);
  }
  map_page(fault_page, virt_to_mfn(fault_page), PTE_P | PTE_W | PTE_A | PTE_D);
}

void
event_upcall(void)
{
  volatile struct vcpu_info *v = &shared->vcpu_info[0];
  u64 sel;

  v->evtchn_upcall_pending = 0;
  sel = __atomic_exchange_n(&v->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
  while (sel) {
    u32 word = __builtin_ctzl(sel);
    sel &= sel - 1;
    u64 bits = shared->evtchn_pending[word] & ~shared->evtchn_mask[word];
    while (bits) {
      u32 bit = __builtin_ctzl(bits);
      bits &= bits - 1;
      __atomic_fetch_and(&shared->evtchn_pending[word], ~(1UL << bit), __ATOMIC_SEQ_CST);
      if (word * 64 + bit == timer_port)
        timer_events++;
    }
  }
}

void
failsafe(void)
{
  print("xenhello64: failsafe callback\n");
  shutdown(SHUTDOWN_crash);
}

// Traps by vector, 16 bytes each, the list ended by a zero address: int3, which
// the kernel (DPL 3: anyone) may raise, and page faults.
static void
set_traps(void)
{
  static struct trap_info traps[] = {
    { 3, 3, FLAT_KERNEL_CS64, 0 },
    { 14, 0, FLAT_KERNEL_CS64, 0 },
    { 0, 0, 0, 0 },
  };

  traps[0].address = (u64)int3_entry;
  traps[1].address = (u64)page_fault_entry;
  printnum("traps: int3 and page fault handlers set (",
           hypercall(__HYPERVISOR_set_trap_table, traps, 0, 0, 0, 0), ")\n");
}

static void
take_a_trap(void)
{
  asm volatile("int3");
  printnum("trap: int3 taken and returned with HYPERVISOR_iret (", int3_count, ")\n");
}

// Unmap a page, read it: the fault comes with the address in vcpu_info.arch.cr2 and
// an error code saying "not present, read, kernel mode" (0), whatever the CPU said,
// since the kernel's CPL is 3. The handler maps the page back, and the read, run
// again, sees what was written before.
static void
take_a_page_fault(void)
{
  u64 seen;

  fault_page[0] = 0x5eed;
  map_page(fault_page, 0, 0);
  seen = fault_page[0];
  printnum("page fault: ", faults, " on reading an unmapped page, cr2 ");
  print(fault_address == (u64)fault_page ? "its address" : "another address");
  printnum(", error code ", fault_error, "; mapped again, the read saw ");
  printnum("", seen, "\n");
}

static u64
system_time(void)
{
  volatile struct vcpu_time_info *t = &shared->vcpu_info[0].time;
  u32 version;
  u64 now;

  do {
    version = t->version;
    asm volatile("" ::: "memory");
    now = t->system_time;
    asm volatile("" ::: "memory");
  } while ((version & 1) || version != t->version);
  return now;
}

static void
take_a_timer_event(void)
{
  struct evtchn_bind_virq bind = { VIRQ_TIMER, 0, 0 };
  u64 deadline;
  long r;

  hypercall(__HYPERVISOR_set_callbacks, event_entry, failsafe_entry, 0, 0, 0);
  r = hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_virq, &bind, 0, 0, 0);
  timer_port = bind.port;
  hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_unmask, &timer_port, 0, 0, 0);
  printnum("events: VIRQ_TIMER bound (", r, ")");
  printnum(" to port ", timer_port, "\n");

  deadline = system_time() + 1000000;  // 1 ms of system time
  hypercall(__HYPERVISOR_set_timer_op, deadline, 0, 0, 0, 0);
  while (timer_events == 0)
    hypercall(__HYPERVISOR_sched_op, SCHEDOP_block, 0, 0, 0, 0);  // unmasks events
  printnum("timer: ", timer_events, " event through the callback, ");
  print(system_time() >= deadline ? "on time\n" : "early\n");
}

// ---- segment bases -------------------------------------------------------------------------
static u64
gs_word(void)
{
  u64 word;

  asm volatile("movq %%gs:0, %0" : "=r"(word));
  return word;
}

// The kernel's GS base points at its block (Linux's per-CPU area), the user's at
// the bottom of the user stack page, where the kernel leaves a word for ring 3 to
// find. Xen swaps the two at every kernel/user switch; the kernel never swapgs.
static void
set_segment_bases(void)
{
  long rk, ru;

  rk = hypercall(__HYPERVISOR_set_segment_base, SEGBASE_GS_KERNEL, &kernel_gs_block,
                 0, 0, 0);
  ru = hypercall(__HYPERVISOR_set_segment_base, SEGBASE_GS_USER, USER_STACK_VA, 0, 0, 0);
  printnum("segments: kernel gs base set (", rk, ")");
  printnum(", user gs base set (", ru, "), ");
  print(gs_word() == KERNEL_GS_WORD ? "gs:0 reads the kernel's block\n"
                                    : "gs:0 reads something else\n");
}

// ---- ring 3 ----------------------------------------------------------------------------------
// The user address space: one table per level, mapping the program's code (read
// only) and its stack. Xen takes no page as a page table while the guest can write
// it: each table is mapped read-only before use. The kernel's own L4 gets the same
// lower half, as Linux's kernel page tables include the user's, so that system
// calls read user memory directly; the user L4 has no kernel mappings at all.
static long
build_user_space(void)
{
  u64 *tables[] = { user_l4, user_l3, user_l2, user_l1 };
  struct mmu_update kernel_slot;
  struct mmuext_op user_base = { MMUEXT_NEW_USER_BASEPTR, virt_to_mfn(user_l4), 0 };
  long r = 0;

  user_stack[0] = USER_GS_WORD;
  user_l1[PTX(0, USER_CODE_VA)] = virt_to_mfn(user_program) << PAGE_SHIFT |
                                  PTE_P | PTE_U | PTE_A;
  user_l1[PTX(0, USER_STACK_VA)] = virt_to_mfn(user_stack) << PAGE_SHIFT |
                                   PTE_P | PTE_W | PTE_U | PTE_A | PTE_D;
  user_l2[PTX(1, USER_CODE_VA)] = virt_to_mfn(user_l1) << PAGE_SHIFT |
                                  PTE_P | PTE_W | PTE_U | PTE_A;
  user_l3[PTX(2, USER_CODE_VA)] = virt_to_mfn(user_l2) << PAGE_SHIFT |
                                  PTE_P | PTE_W | PTE_U | PTE_A;
  user_l4[PTX(3, USER_CODE_VA)] = virt_to_mfn(user_l3) << PAGE_SHIFT |
                                  PTE_P | PTE_W | PTE_U | PTE_A;
  for (u32 i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
    r |= map_page(tables[i], virt_to_mfn(tables[i]), PTE_P | PTE_A);

  kernel_slot.ptr = (virt_to_mfn((void *)si->pt_base) << PAGE_SHIFT) +
                    PTX(3, USER_CODE_VA) * sizeof(u64) + MMU_NORMAL_PT_UPDATE;
  kernel_slot.val = user_l4[PTX(3, USER_CODE_VA)];
  r |= hypercall(__HYPERVISOR_mmu_update, &kernel_slot, 1, 0, DOMID_SELF, 0);
  r |= hypercall(__HYPERVISOR_mmuext_op, &user_base, 1, 0, DOMID_SELF, 0);
  return r;
}

// A system call from ring 3 (entry.S's syscall_entry), in kernel mode with the
// kernel's GS base and L4. A bad call is the program's error: -ENOSYS or -EFAULT.
long
user_syscall(long number, u64 arg0, u64 arg1)
{
  kernel_gs_in_callback = gs_word();
  switch (number) {
  case USER_SYS_write:
    if (arg0 < USER_CODE_VA || arg1 > PAGE_SIZE || arg0 + arg1 > USER_CODE_VA + PAGE_SIZE)
      return -14;
    print("user: ");
    write((const char *)arg0, arg1);
    return arg1;
  case USER_SYS_gsword:
    user_gs_seen = arg0;
    return 0;
  case USER_SYS_exit:
    leave_user(arg0);
  }
  return -38;
}

static void
run_user_program(void)
{
  struct callback_register syscall_callback = {
    CALLBACKTYPE_syscall, CALLBACKF_mask_events, (u64)syscall_entry
  };
  long rs, rc, ru, status;

  rs = hypercall(__HYPERVISOR_stack_switch, FLAT_KERNEL_SS,
                 syscall_stack + sizeof(syscall_stack), 0, 0, 0);
  rc = hypercall(__HYPERVISOR_callback_op, CALLBACKOP_register, &syscall_callback,
                 0, 0, 0);
  ru = build_user_space();
  printnum("user: kernel stack (", rs, ")");
  printnum(", syscall callback (", rc, ")");
  printnum(" and user page tables (", ru, ") set; entering ring 3 with HYPERVISOR_iret\n");

  status = enter_user(USER_CODE_VA, USER_STACK_VA + PAGE_SIZE);
  shared->vcpu_info[0].evtchn_upcall_mask = 0;  // the callback masked events

  print("user: gs:0 read ");
  print(user_gs_seen == USER_GS_WORD ? "the user's word in ring 3" : "something else in ring 3");
  print(kernel_gs_in_callback == KERNEL_GS_WORD ? ", the kernel's in the callback\n"
                                                : ", something else in the callback\n");
  printnum("user: exit ", status, " through the syscall callback\n");
}

void
main(struct start_info *start)
{
  long version;

  si = start;
  print("xenhello64: ");
  print(si->magic);
  printnum(", ", si->nr_pages, " pages\n");
  version = hypercall(__HYPERVISOR_xen_version, XENVER_version, 0, 0, 0, 0);
  printnum("xen_version: ", (u64)version >> 16, ".");
  printnum("", version & 0xffff, "\n");

  map_shared_info();
  set_traps();
  take_a_trap();
  take_a_page_fault();
  take_a_timer_event();
  set_segment_bases();
  run_user_program();
  ring_write("xenhello64: hello from the console ring\n");
  print("xenhello64: powering off\n");
  shutdown(SHUTDOWN_poweroff);
}
