// The boot counter: a record in sector 1 of the disk, read, incremented, written
// back, flushed and read again at every boot. A disk without the record (a fresh
// image) is formatted with a count of 1.

#include "types.h"
#include "lib.h"
#include "defs.h"

#define BOOTREC_SECTOR 1
#define BOOTREC_MAGIC  "minikern"  // 8 bytes, no NUL

// The sector as the disk holds it: the magic, the count (little endian), zeros.
union bootrec {
  struct {
    char magic[8];
    uint count;
  };
  uint words[128];
};

// Returns whether every disk operation succeeded; no disk at all is not a failure.
int
bootcount(void)
{
  union bootrec rec, again;
  int passed;

  if (!ideinit()) {
    cprintf("disk: no ATA disk, boot count 1, not saved\n");
    return 1;
  }

  passed = ideread(BOOTREC_SECTOR, &rec, 1) == 0;
  if (memcmp(rec.magic, BOOTREC_MAGIC, sizeof(rec.magic)) != 0) {
    memset(&rec, 0, sizeof(rec));
    memmove(rec.magic, BOOTREC_MAGIC, sizeof(rec.magic));
  }
  rec.count++;

  passed &= idewrite(BOOTREC_SECTOR, &rec, 1) == 0;
  passed &= ideflush() == 0;
  passed &= ideread(BOOTREC_SECTOR, &again, 1) == 0;
  passed &= memcmp(&rec, &again, sizeof(rec)) == 0;
  cprintf("disk: boot count %u, written, flushed and read back %s\n", rec.count,
          verdict(passed));
  return passed;
}
