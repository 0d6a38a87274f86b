// Multiprocessor configuration, found as xv6's mp.c finds it: the floating pointer
// structure in the first KiB of the EBDA, else in the last KiB of base memory, else
// in the BIOS ROM at 0xF0000-0xFFFFF; then the configuration table it points to,
// whose entries name the processors, the buses, the I/O APIC and every interrupt
// line. Layouts from the Intel MultiProcessor Specification 1.4, chapter 4.

#include "types.h"
#include "lib.h"
#include "memlayout.h"
#include "defs.h"

struct mp {              // floating pointer structure (4.1)
  uchar signature[4];    // "_MP_"
  uint physaddr;         // of the configuration table
  uchar length;          // in 16-byte units: 1
  uchar specrev;         // 1 or 4
  uchar checksum;        // all bytes add up to 0
  uchar type;            // 0: there is a configuration table
  uchar imcrp;           // IMCRP: the IMCR is present (PIC mode)
  uchar reserved[3];
};

struct mpconf {          // configuration table header (4.2)
  uchar signature[4];    // "PCMP"
  ushort length;         // of the base table, header included
  uchar version;
  uchar checksum;
  uchar oem[8];
  uchar product[12];
  uint oemtable;
  ushort oemlength;
  ushort entries;
  uint lapicaddr;        // where every processor finds its local APIC
  ushort xlength;
  uchar xchecksum;
  uchar reserved;
};

struct mpproc {          // processor entry (4.3.1)
  uchar type;
  uchar apicid;
  uchar version;
  uchar flags;
  uint signature;
  uint feature;
  uchar reserved[8];
};

struct mpbus {           // bus entry (4.3.2)
  uchar type;
  uchar busid;
  uchar name[6];         // "ISA   ", "PCI   "
};

struct mpioapic {        // I/O APIC entry (4.3.3)
  uchar type;
  uchar apicno;
  uchar version;
  uchar flags;
  uint addr;
};

struct mpintr {          // I/O and local interrupt assignment entries (4.3.4, 4.3.5)
  uchar type;
  uchar intrtype;        // INT, NMI, SMI or ExtINT
  ushort flags;          // polarity and trigger
  uchar srcbus;
  uchar srcirq;          // PCI: device << 2 | pin
  uchar dstapic;
  uchar dstpin;          // I/O APIC input, or LINTn
};

#define MPPROC   0
#define MPBUS    1
#define MPIOAPIC 2
#define MPIOINTR 3
#define MPLINTR  4

#define MPBOOT   0x02    // processor flags: the bootstrap processor
#define IMCRP    0x80    // floating pointer feature byte 2: the IMCR is present

#define BDA_EBDA_SEGMENT 0x40E  // the EBDA's segment
#define BDA_BASE_KIB     0x413  // base memory size in KiB
#define BIOS_ROM         0xF0000

uint lapicaddr;
uint ioapicaddr;
uchar ioapicid;

static const char *const intrtypes[] = { "INT", "NMI", "SMI", "ExtINT" };

static uchar
sum(uchar *addr, int len)
{
  uchar s = 0;

  while (len-- > 0)
    s += *addr++;
  return s;
}

static int
same(const uchar *a, const char *b, int len)
{
  while (len-- > 0)
    if (*a++ != (uchar)*b++)
      return 0;
  return 1;
}

// A floating pointer with a good checksum in the LEN bytes at physical address A.
static struct mp *
mpsearch1(uint a, int len)
{
  uchar *p = P2V(a), *e = p + len;

  for (; p < e; p += sizeof(struct mp))
    if (same(p, "_MP_", 4) && sum(p, sizeof(struct mp)) == 0)
      return (struct mp *)p;
  return 0;
}

// The three places the specification lists (4 "MP Floating Pointer Structure").
static struct mp *
mpsearch(void)
{
  uchar *bda = P2V(0);
  uint p;
  struct mp *mp;

  p = (bda[BDA_EBDA_SEGMENT + 1] << 8 | bda[BDA_EBDA_SEGMENT]) << 4;
  if (p && (mp = mpsearch1(p, 1024))) {
    cprintf("mp: floating pointer in the EBDA (segment 0x%x)\n", p >> 4);
    return mp;
  }
  p = (bda[BDA_BASE_KIB + 1] << 8 | bda[BDA_BASE_KIB]) * 1024;
  if ((mp = mpsearch1(p - 1024, 1024))) {
    cprintf("mp: floating pointer in the last KiB of base memory (%d KiB)\n", p / 1024);
    return mp;
  }
  if ((mp = mpsearch1(BIOS_ROM, 0x10000)))
    cprintf("mp: floating pointer in the BIOS ROM\n");
  return mp;
}

// The configuration table, if its signature, version and checksum are right.
static struct mpconf *
mpconfig(struct mp **pmp)
{
  struct mp *mp = mpsearch();
  struct mpconf *conf;

  if (mp == 0 || mp->physaddr == 0)
    return 0;
  conf = P2V(mp->physaddr);
  if (!same(conf->signature, "PCMP", 4) || (conf->version != 1 && conf->version != 4))
    return 0;
  if (sum((uchar *)conf, conf->length) != 0)
    return 0;
  *pmp = mp;
  return conf;
}

static void
printintr(struct mpintr *e)
{
  cprintf("mp: %s %s bus %d irq %d -> ", e->type == MPIOINTR ? "I/O" : "local",
          intrtypes[e->intrtype & 3], e->srcbus, e->srcirq);
  if (e->type == MPIOINTR)
    cprintf("I/O APIC %d pin %d", e->dstapic, e->dstpin);
  else
    cprintf("local APIC 0x%x LINT%d", e->dstapic, e->dstpin);
  cprintf(", flags 0x%x\n", e->flags);
}

// One entry of the table; its size, or 0 for a type the specification does not have.
static int
mpentry(uchar *p, int *ncpu)
{
  struct mpproc *proc = (struct mpproc *)p;
  struct mpbus *bus = (struct mpbus *)p;
  struct mpioapic *ioapic = (struct mpioapic *)p;

  switch (*p) {
  case MPPROC:
    cprintf("mp: processor, local APIC %d version 0x%x%s\n", proc->apicid,
            proc->version, proc->flags & MPBOOT ? ", bootstrap" : "");
    (*ncpu)++;
    return sizeof(struct mpproc);
  case MPBUS:
    cprintf("mp: bus %d %c%c%c\n", bus->busid, bus->name[0], bus->name[1],
            bus->name[2]);
    return sizeof(struct mpbus);
  case MPIOAPIC:
    ioapicid = ioapic->apicno;
    ioapicaddr = ioapic->addr;
    cprintf("mp: I/O APIC %d version 0x%x at 0x%x\n", ioapic->apicno, ioapic->version,
            ioapic->addr);
    return sizeof(struct mpioapic);
  case MPIOINTR:
  case MPLINTR:
    printintr((struct mpintr *)p);
    return sizeof(struct mpintr);
  }
  return 0;
}

// Walk the table; 0 if there is none or it is not what the specification says.
int
mpinit(void)
{
  struct mp *mp;
  struct mpconf *conf = mpconfig(&mp);
  uchar *p, *e;
  int size, ncpu = 0;

  if (conf == 0) {
    cprintf("mp: no configuration table\n");
    return 0;
  }
  lapicaddr = conf->lapicaddr;
  cprintf("mp: spec 1.%d, table at 0x%x, %d entries, local APICs at 0x%x\n",
          mp->specrev, mp->physaddr, conf->entries, lapicaddr);
  for (p = (uchar *)(conf + 1), e = (uchar *)conf + conf->length; p < e; p += size)
    if ((size = mpentry(p, &ncpu)) == 0) {
      cprintf("mp: entry of unknown type %d\n", *p);
      return 0;
    }
  cprintf("mp: processors: %d; IMCR %s\n", ncpu,
          mp->imcrp & IMCRP ? "present" : "absent");
  return ncpu > 0 && ioapicaddr != 0;
}
