// The disk workload (issue 14's disk benchmark): with `diskbench=N` on the command
// line, minikern reads N sectors, writes N sectors over them, flushes and prints one
// line, in place of the boot counter and the user programs. `diskreq=R` (1 to 8,
// default 1) is how many sectors each call to the disk driver moves: ide.c still
// sends the drive one command per sector, a block frontend one request per call.
// The line depends only on the disk's contents, so every way of running minikern
// prints the same bytes on the same disk.

#include "types.h"
#include "lib.h"
#include "defs.h"

#define FIRST_SECTOR 2                  // past the boot counter's record (bootcount.c)
#define MAX_PER_CALL (PGSIZE / SECTSIZE)  // one page: one segment of a block request

#define FNV_OFFSET 2166136261u          // FNV-1a, 32 bits (draft-eastlake-fnv)
#define FNV_PRIME  16777619u

// The decimal value of option `name=` on the command line, or -1 without it.
static int
option(const char *cmdline, const char *name)
{
  const char *p, *n;
  int value;

  for (p = cmdline; *p; p++) {
    if (p != cmdline && p[-1] != ' ')
      continue;
    for (n = name; *n && *p == *n; n++, p++)
      ;
    if (*n || *p != '=')
      continue;
    for (value = 0, p++; *p >= '0' && *p <= '9'; p++)
      value = value * 10 + (*p - '0');
    return value;
  }
  return -1;
}

static uint
fnv1a(uint hash, const uchar *data, uint len)
{
  for (; len > 0; len--, data++)
    hash = (hash ^ *data) * FNV_PRIME;
  return hash;
}

// What the workload writes: word i of sector s holds s * 128 + i.
static void
pattern(uint *words, uint lba, uint n)
{
  uint i;

  for (i = 0; i < n * SECTSIZE / 4; i++)
    words[i] = lba * (SECTSIZE / 4) + i;
}

// How many sectors the call at lba moves: per, or what is left before end.
static uint
chunk(uint lba, uint end, uint per)
{
  return end - lba < per ? end - lba : per;
}

static int total = -1, per = 1;  // the options: sectors in all, sectors per call

// Read the options now: the command line may lie where the kernel's page tables will
// not map it.
void
diskbenchinit(const char *cmdline)
{
  total = option(cmdline, "diskbench");
  if (option(cmdline, "diskreq") >= 0)
    per = option(cmdline, "diskreq");
  if (per < 1 || per > MAX_PER_CALL)
    panic("diskbench: diskreq must be 1 to 8");
}

// Returns whether the command line asked for the workload (which then has run).
int
diskbench(void)
{
  uint lba, n, end, hash = FNV_OFFSET;
  char *buf;
  int passed;

  if (total < 0)
    return 0;
  end = FIRST_SECTOR + total;
  buf = kalloc();
  passed = ideinit();
  for (lba = FIRST_SECTOR; passed && lba < end; lba += n) {
    n = chunk(lba, end, per);
    passed = ideread(lba, buf, n) == 0;
    hash = fnv1a(hash, (uchar *)buf, n * SECTSIZE);
  }
  for (lba = FIRST_SECTOR; passed && lba < end; lba += n) {
    n = chunk(lba, end, per);
    pattern((uint *)buf, lba, n);
    passed = idewrite(lba, buf, n) == 0;
  }
  passed = passed && ideflush() == 0;
  kfree(buf);
  cprintf("diskbench: %d sectors read (fnv-1a %x), written and flushed %s\n", total, hash,
          verdict(check(passed)));
  return 1;
}
