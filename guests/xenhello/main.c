// xenhello: a small kernel written for Xen's 32-bit PV ABI (PAE), in the manner of
// a Xen port: it calls the hypervisor only through its hypercall page, maps
// shared_info itself, takes a trap and a timer event, prints on both consoles and
// talks to XenStore over its ring.

#include "xen.h"

extern char hypercall_page[];
extern char int3_entry[], event_entry[], failsafe_entry[];

#define VIRT_BASE 0xC0000000u

// A hypercall: `call hypercall_page + 32 * n` with arguments in EBX, ECX, EDX, ESI, EDI.
#define hypercall(n, a1, a2, a3, a4, a5) ({                                     \
  long __res;                                                                   \
  uint __b = (uint)(a1), __c = (uint)(a2), __d = (uint)(a3);                    \
  uint __s = (uint)(a4), __D = (uint)(a5);                                      \
  asm volatile("call hypercall_page + %c[off]"                                  \
               : "=a"(__res), "+b"(__b), "+c"(__c), "+d"(__d), "+S"(__s), "+D"(__D) \
               : [off] "i"((n) * 32)                                            \
               : "memory");                                                     \
  __res; })

static struct start_info *si;
static volatile struct shared_info *shared;
static char shared_page[4096] __attribute__((aligned(4096)));
static volatile int int3_count;
static volatile int timer_events;
static uint timer_port;

// ---- output: console_io, and the PV console ring -------------------------------------
static uint
strlen(const char *s)
{
  uint n = 0;
  while (s[n])
    n++;
  return n;
}

static void
print(const char *s)
{
  hypercall(__HYPERVISOR_console_io, CONSOLEIO_write, strlen(s), s, 0, 0);
}

static char *
utoa(uint x, uint base, char *end)
{
  *--end = 0;
  do {
    *--end = "0123456789abcdef"[x % base];
    x /= base;
  } while (x);
  return end;
}

static void
printnum(const char *before, uint x, uint base, const char *after)
{
  char buf[16];
  print(before);
  if (base == 16)
    print("0x");
  print(utoa(x, base, buf + sizeof buf));
  print(after);
}

static void
ring_write(const char *s)
{
  volatile struct xencons_interface *ring =
    (void *)(VIRT_BASE + (si->console_mfn << 12));
  uint prod = ring->out_prod;
  uint n = strlen(s);
  for (uint i = 0; i < n; i++)
    ring->out[(prod + i) & (sizeof ring->out - 1)] = s[i];
  asm volatile("" ::: "memory");  // the bytes before the index (x86 keeps store order)
  ring->out_prod = prod + n;
  uint port = si->console_evtchn;
  hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_send, &port, 0, 0, 0);
}

// ---- shared_info, traps and events ----------------------------------------------------
static void
map_shared_info(void)
{
  long r = hypercall(__HYPERVISOR_update_va_mapping, shared_page,
                     si->shared_info | 0x63, 0, UVMF_INVLPG, 0);
  shared = (volatile struct shared_info *)shared_page;
  printnum("shared_info: mapped (", r, 10, ")");
  printnum(", upcall mask ", shared->vcpu_info[0].evtchn_upcall_mask, 10, "\n");
}

void
int3_trap(void)
{
  int3_count++;
}

void
event_upcall(void)
{
  volatile struct vcpu_info *v = &shared->vcpu_info[0];
  v->evtchn_upcall_pending = 0;
  uint sel = __atomic_exchange_n(&v->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
  while (sel) {
    uint word = __builtin_ctz(sel);
    sel &= sel - 1;
    uint bits = shared->evtchn_pending[word] & ~shared->evtchn_mask[word];
    while (bits) {
      uint bit = __builtin_ctz(bits);
      bits &= bits - 1;
      __atomic_fetch_and(&shared->evtchn_pending[word], ~(1u << bit), __ATOMIC_SEQ_CST);
      if (word * 32 + bit == timer_port)
        timer_events++;
    }
  }
}

void
failsafe(void)
{
  print("xenhello: failsafe callback\n");
  uint reason = 3;  // SHUTDOWN_crash
  hypercall(__HYPERVISOR_sched_op, SCHEDOP_shutdown, &reason, 0, 0, 0);
}

static void
take_a_trap(void)
{
  static struct trap_info traps[] = {
    { 3, 3, FLAT_RING1_CS, 0 },
    { 0, 0, 0, 0 },
  };
  traps[0].address = (uint)int3_entry;
  hypercall(__HYPERVISOR_set_trap_table, traps, 0, 0, 0, 0);
  asm volatile("int3");
  printnum("trap: int3 taken and returned with HYPERVISOR_iret (", int3_count, 10, ")\n");
}

static u64
system_time(void)
{
  volatile struct vcpu_time_info *t = &shared->vcpu_info[0].time;
  uint version;
  u64 now;
  do {
    version = t->version;
    asm volatile("" ::: "memory");
    now = t->system_time;
    asm volatile("" ::: "memory");
  } while ((version & 1) || version != t->version);
  return now;
}

// System time now, extrapolated from the TSC as Xen's pvclock readers do (public/xen.h,
// struct vcpu_time_info): system_time + ((tsc - tsc_timestamp) << tsc_shift) * mul >> 32.
static u64
system_time_from_tsc(void)
{
  volatile struct vcpu_time_info *t = &shared->vcpu_info[0].time;
  uint version, mul;
  u64 base, stamp, tsc;
  signed char shift;
  do {
    version = t->version;
    asm volatile("" ::: "memory");
    base = t->system_time;
    stamp = t->tsc_timestamp;
    mul = t->tsc_to_system_mul;
    shift = t->tsc_shift;
    asm volatile("rdtsc" : "=A"(tsc) :: "memory");
  } while ((version & 1) || version != t->version);
  u64 delta = tsc - stamp;
  delta = shift >= 0 ? delta << shift : delta >> -shift;
  return base + ((u64)(uint)delta * mul >> 32) + (delta >> 32) * mul;
}

static void
take_a_timer_event(void)
{
  hypercall(__HYPERVISOR_set_callbacks, FLAT_RING1_CS, event_entry,
            FLAT_RING1_CS, failsafe_entry, 0);
  // Xen ticks every vCPU at 100 Hz until told not to (pv_vcpu_initialise): this
  // guest counts the events of its own timer only, so it stops the tick first, as
  // Linux does for each vCPU it sets up.
  hypercall(__HYPERVISOR_vcpu_op, VCPUOP_stop_periodic_timer, 0, 0, 0, 0);
  struct evtchn_bind_virq bind = { VIRQ_TIMER, 0, 0 };
  long r = hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_bind_virq, &bind, 0, 0, 0);
  timer_port = bind.port;
  hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_unmask, &timer_port, 0, 0, 0);
  printnum("events: VIRQ_TIMER bound (", r, 10, ")");
  printnum(" to port ", timer_port, 10, "\n");

  u64 deadline = system_time() + 1000000;  // 1 ms of system time
  hypercall(__HYPERVISOR_set_timer_op, (uint)deadline, (uint)(deadline >> 32), 0, 0, 0);
  while (timer_events == 0)
    hypercall(__HYPERVISOR_sched_op, SCHEDOP_block, 0, 0, 0, 0);  // unmasks events
  printnum("timer: ", timer_events, 10, " event through the callback, ");
  print(system_time() >= deadline ? "on time\n" : "early\n");
}

// The wall clock, then a 10 ms sleep timed with rdtsc: it must wake no sooner than
// asked and within Xen's timer slop (50 us, xen/common/timer.c) after it.
static void
sleep_on_the_tsc(void)
{
  printnum("time: wall clock ", shared->wc_sec, 10, " s");
  printnum(" + ", shared->wc_nsec, 10, " ns");
  printnum(" (version ", shared->wc_version, 10, ")\n");
  u64 start = system_time_from_tsc();
  u64 deadline = start + 10000000;
  int seen = timer_events;
  hypercall(__HYPERVISOR_set_timer_op, (uint)deadline, (uint)(deadline >> 32), 0, 0, 0);
  while (timer_events == seen)
    hypercall(__HYPERVISOR_sched_op, SCHEDOP_block, 0, 0, 0, 0);
  u64 late = system_time_from_tsc() - deadline;
  printnum("time: rdtsc says ", (uint)start, 10, " ns of system time;");
  printnum(" a 10 ms sleep woke ", (uint)late, 10, " ns after its deadline, ");
  print((long long)late >= 0 && late < 50000 ? "within the slop\n" : "off time\n");
}

// ---- XenStore over the store ring (io/xs_wire.h, docs/misc/xenstore-ring.txt) ---------
// Polled: the store port stays masked, and a request's reply is waited for in rsp[],
// signalling the daemon whenever req[] is full, rsp[] is empty or we made room.
static volatile struct xenstore_domain_interface *store;
static uint store_port, last_req_id, events_seen;
static char payload[XENSTORE_PAYLOAD_MAX + 1];  // the last message's, NUL added
static char event_path[64];

static void
store_notify(void)
{
  hypercall(__HYPERVISOR_event_channel_op, EVTCHNOP_send, &store_port, 0, 0, 0);
}

static void
store_put(const char *data, uint len)
{
  for (uint i = 0; i < len; i++) {
    while (store->req_prod - store->req_cons == XENSTORE_RING_SIZE)
      store_notify();
    store->req[store->req_prod & (XENSTORE_RING_SIZE - 1)] = data[i];
    asm volatile("" ::: "memory");  // the byte before the index
    store->req_prod++;
  }
}

static void
store_get(char *data, uint len)
{
  for (uint i = 0; i < len; i++) {
    while (store->rsp_cons == store->rsp_prod)
      store_notify();
    data[i] = store->rsp[store->rsp_cons & (XENSTORE_RING_SIZE - 1)];
    asm volatile("" ::: "memory");
    store->rsp_cons++;
  }
}

// The next message from the daemon into payload; a watch event is noted.
static struct xsd_sockmsg
store_next(void)
{
  struct xsd_sockmsg msg;
  store_get((char *)&msg, sizeof msg);
  store_get(payload, msg.len);
  payload[msg.len] = 0;
  store_notify();  // we made room in rsp[]
  if (msg.type == XS_WATCH_EVENT) {
    uint n = strlen(payload) < sizeof event_path ? strlen(payload) : sizeof event_path - 1;
    for (uint i = 0; i <= n; i++)
      event_path[i] = i < n ? payload[i] : 0;
    events_seen++;
  }
  return msg;
}

// Send TYPE with the string PATH and LEN bytes of VALUE; return the reply's type
// (XS_ERROR with the errno's name in payload, or TYPE).
static uint
xs_request(uint type, uint tx, const char *path, const char *value, uint len)
{
  struct xsd_sockmsg msg = { type, ++last_req_id, tx, strlen(path) + 1 + len };
  store_put((const char *)&msg, sizeof msg);
  store_put(path, strlen(path) + 1);
  store_put(value, len);
  store_notify();
  uint id = msg.req_id;
  do
    msg = store_next();
  while (msg.type == XS_WATCH_EVENT || msg.req_id != id);
  return msg.type;
}

static void
print_read(const char *before, const char *path, uint tx, const char *after)
{
  print(before);
  print(xs_request(XS_READ, tx, path, 0, 0) == XS_ERROR ? "error " : "");
  print(payload);
  print(after);
}

static void
use_the_store(void)
{
  store = (void *)(VIRT_BASE + (si->store_mfn << 12));
  store_port = si->store_evtchn;
  shared->evtchn_mask[store_port / 32] |= 1u << (store_port % 32);
  print_read("xenstore: domid ", "domid", 0, "");
  print_read(", name ", "name", 0, "\n");

  xs_request(XS_WRITE, 0, "data/greeting", "hello", 5);
  print_read("xenstore: wrote data/greeting, read back ", "data/greeting", 0, "\n");
  print_read("xenstore: reading /vm: ", "/vm", 0, "");
  print_read(", reading data/none: ", "data/none", 0, "\n");

  xs_request(XS_WATCH, 0, "data", "w1", 3);
  while (events_seen == 0)  // the watch fires once at once, after the reply
    store_next();
  print("xenstore: watch on data fired at once for ");
  print(event_path);
  xs_request(XS_WRITE, 0, "data/count", "1", 1);  // its event comes before the reply
  printnum(", then ", events_seen - 1, 10, " time for ");
  print(event_path);
  print("\n");

  xs_request(XS_TRANSACTION_START, 0, "", 0, 0);
  uint tx = 0;
  for (char *c = payload; *c; c++)
    tx = tx * 10 + (*c - '0');
  xs_request(XS_WRITE, tx, "data/tx", "done", 4);
  printnum("xenstore: transaction ", tx, 10, "");
  print_read(" reads its write (", "data/tx", tx, ")");
  print_read(", outside it ", "data/tx", 0, "");
  xs_request(XS_TRANSACTION_END, tx, "T", 0, 0);
  print_read(", committed ", "data/tx", 0, "");
  printnum(" (", events_seen, 10, " events, last ");
  print(event_path);
  print(")\n");

  xs_request(XS_DIRECTORY, 0, "data", 0, 0);
  print("xenstore: data holds");
  for (char *name = payload; *name; name += strlen(name) + 1) {
    print(" ");
    print(name);
  }
  print("\n");
}

// ---- versions ---------------------------------------------------------------------------
static void
check_version(void)
{
  long v = hypercall(__HYPERVISOR_xen_version, XENVER_version, 0, 0, 0, 0);
  printnum("xen_version: ", (uint)v >> 16, 10, ".");
  printnum("", v & 0xffff, 10, "\n");

  // Xen's forced-emulation prefix: ud2; .ascii "xen"; cpuid.
  uint eax = 0x40000000, ebx, ecx, edx;
  asm volatile("ud2; .ascii \"xen\"; cpuid"
               : "+a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx));
  uint sig[4] = { ebx, ecx, edx, 0 };
  print("cpuid: ");
  print((char *)sig);
  printnum(", leaves to ", eax, 16, "");
  eax = 0x40000001;
  asm volatile("ud2; .ascii \"xen\"; cpuid"
               : "+a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx));
  print(eax == (uint)v ? ", version agrees\n" : ", version differs\n");
}

void
main(struct start_info *start)
{
  si = start;
  print("xenhello: ");
  print(si->magic);
  printnum(", ", si->nr_pages, 10, " pages\n");
  check_version();
  map_shared_info();
  take_a_trap();
  take_a_timer_event();
  sleep_on_the_tsc();
  ring_write("xenhello: hello from the console ring\n");
  use_the_store();
  hypercall(__HYPERVISOR_sched_op, SCHEDOP_yield, 0, 0, 0, 0);
  print("xenhello: powering off\n");
  uint reason = SHUTDOWN_poweroff;
  hypercall(__HYPERVISOR_sched_op, SCHEDOP_shutdown, &reason, 0, 0, 0);
}
