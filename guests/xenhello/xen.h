// The parts of Xen's public headers xenhello uses (xen/include/public: xen.h,
// elfnote.h, sched.h, event_channel.h, vcpu time in xen.h, io/console.h,
// io/xs_wire.h), typed from them, 32-bit x86.
#ifndef XENHELLO_XEN_H
#define XENHELLO_XEN_H

#define XEN_ELFNOTE_ENTRY          1
#define XEN_ELFNOTE_HYPERCALL_PAGE 2
#define XEN_ELFNOTE_VIRT_BASE      3
#define XEN_ELFNOTE_XEN_VERSION    5
#define XEN_ELFNOTE_GUEST_OS       6
#define XEN_ELFNOTE_LOADER         8
#define XEN_ELFNOTE_PAE_MODE       9
#define XEN_ELFNOTE_FEATURES       10

#define __HYPERVISOR_set_trap_table    0
#define __HYPERVISOR_set_callbacks     4
#define __HYPERVISOR_update_va_mapping 14
#define __HYPERVISOR_set_timer_op      15
#define __HYPERVISOR_xen_version       17
#define __HYPERVISOR_console_io        18
#define __HYPERVISOR_iret              23
#define __HYPERVISOR_sched_op          29
#define __HYPERVISOR_event_channel_op  32

#ifndef __ASSEMBLER__
#include "types.h"

typedef unsigned long long u64;

#define FLAT_RING1_CS 0xe019
#define CONSOLEIO_write 0
#define SCHEDOP_yield 0
#define SCHEDOP_block 1
#define SCHEDOP_shutdown 2
#define SHUTDOWN_poweroff 0
#define __HYPERVISOR_vcpu_op 24          // public/vcpu.h, for its periodic timer
#define VCPUOP_stop_periodic_timer 7
#define EVTCHNOP_bind_virq 1
#define EVTCHNOP_send 4
#define EVTCHNOP_unmask 9
#define VIRQ_TIMER 0
#define UVMF_INVLPG 2
#define XENVER_version 0

struct start_info {
  char magic[32];
  uint nr_pages;
  uint shared_info;  // machine address
  uint flags;
  uint store_mfn;
  uint store_evtchn;
  uint console_mfn;
  uint console_evtchn;
  uint pt_base;
  uint nr_pt_frames;
  uint mfn_list;
  uint mod_start;
  uint mod_len;
  char cmd_line[1024];
};

struct vcpu_time_info {
  uint version;  // odd while Xen updates the rest
  uint pad0;
  u64 tsc_timestamp;
  u64 system_time;  // ns
  uint tsc_to_system_mul;
  signed char tsc_shift;
  char pad1[3];
};

struct vcpu_info {
  uchar evtchn_upcall_pending;
  uchar evtchn_upcall_mask;
  ushort pad;
  uint evtchn_pending_sel;
  uint cr2;
  uint arch_pad[5];
  struct vcpu_time_info time;
};

struct shared_info {
  struct vcpu_info vcpu_info[32];
  uint evtchn_pending[32];
  uint evtchn_mask[32];
  uint wc_version;  // the wall clock at system time 0, versioned as vcpu_time_info
  uint wc_sec;      // since 1970-01-01 00:00 UTC
  uint wc_nsec;
};

struct trap_info {
  uchar vector;
  uchar flags;  // DPL that may raise it with int n
  ushort cs;
  uint address;
};

struct evtchn_bind_virq {
  uint virq;
  uint vcpu;
  uint port;  // out
};

struct xencons_interface {
  char in[1024];
  char out[2048];
  uint in_cons, in_prod;
  uint out_cons, out_prod;
};

// io/xs_wire.h: a message is this header and `len` bytes of payload.
#define XS_DIRECTORY 1
#define XS_READ 2
#define XS_WATCH 4
#define XS_TRANSACTION_START 6
#define XS_TRANSACTION_END 7
#define XS_WRITE 11
#define XS_WATCH_EVENT 15
#define XS_ERROR 16
#define XENSTORE_RING_SIZE 1024
#define XENSTORE_PAYLOAD_MAX 4096

struct xsd_sockmsg {
  uint type;
  uint req_id;
  uint tx_id;  // 0, or the transaction the request belongs to
  uint len;
};

struct xenstore_domain_interface {
  char req[XENSTORE_RING_SIZE];  // requests to the daemon
  char rsp[XENSTORE_RING_SIZE];  // replies and watch events
  uint req_cons, req_prod;
  uint rsp_cons, rsp_prod;
};

#endif
#endif
