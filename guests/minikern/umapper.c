// mapper: maps pages, fills them, checks them and unmaps them, in a loop, and
// checks that the kernel refuses the requests it must refuse.

#include "types.h"
#include "user.h"
#include "memlayout.h"

#define CYCLES  64   // map/fill/check/unmap of one page, rotating over SLOTS
#define SLOTS   4
#define BATCH   8    // pages held at once

static char *
slot(int i)
{
  return (char *)UMAPBASE + i * PGSIZE;
}

// A fresh page must read as zeros everywhere.
static int
zeroed(uint *w)
{
  int i;

  for (i = 0; i < PGSIZE / 4; i++)
    if (w[i] != 0)
      return 0;
  return 1;
}

static void
fill(uint *w, uint seed)
{
  int i;

  for (i = 0; i < PGSIZE / 4; i++)
    w[i] = seed * 4096 + i;
}

static int
filled(uint *w, uint seed)
{
  int i;

  for (i = 0; i < PGSIZE / 4; i++)
    if (w[i] != seed * 4096 + i)
      return 0;
  return 1;
}

static int
cycles(void)
{
  int i, ok = 1;
  uint *w;

  for (i = 0; i < CYCLES; i++) {
    w = (uint *)slot(i % SLOTS);
    if (map(w) < 0)
      return 0;
    ok &= zeroed(w);
    fill(w, i + 1);
    ok &= filled(w, i + 1);
    if (unmap(w) < 0)
      return 0;
  }
  return ok;
}

// Hold BATCH pages, check none overwrote another, give them back, and take them
// again: each page must come back zeroed, even though the pages now sit at other
// addresses than before (the freed pages return in the opposite order). A stale
// TLB entry, left by an unmap without invlpg, would show the old contents.
static int
batch(void)
{
  int i, ok = 1;

  for (i = 0; i < BATCH; i++) {
    if (map(slot(i)) < 0)
      return 0;
    fill((uint *)slot(i), 100 + i);
  }
  for (i = 0; i < BATCH; i++)
    ok &= filled((uint *)slot(i), 100 + i);
  for (i = 0; i < BATCH; i++)
    unmap(slot(i));
  for (i = 0; i < BATCH; i++) {
    if (map(slot(i)) < 0)
      return 0;
    ok &= zeroed((uint *)slot(i));
  }
  for (i = 0; i < BATCH; i++)
    ok &= unmap(slot(i)) == 0;
  return ok;
}

// Requests the kernel must refuse: kernel memory, a stack page, an address not
// page aligned, a page already mapped, and unmapping what is not mapped.
static int
refusals(void)
{
  int refused = 0;

  refused += map((void *)KERNLINK) < 0;
  refused += map((void *)(USTACKTOP - PGSIZE)) < 0;
  refused += map(slot(0) + 1) < 0;
  map(slot(0));
  refused += map(slot(0)) < 0;
  unmap(slot(0));
  refused += unmap(slot(0)) < 0;
  refused += unmap((void *)KERNLINK) < 0;
  return refused;
}

void
mapper(void)
{
  int ok1, ok2, refused;

  ok1 = cycles();
  sleep(1);
  ok2 = batch();
  refused = refusals();
  printf("%d map, fill, check, unmap cycles: %s\n", CYCLES, ok1 ? "ok" : "FAIL");
  printf("%d pages at once, remapped pages fresh: %s\n", BATCH, ok2 ? "ok" : "FAIL");
  printf("%d of 6 bad requests refused\n", refused);
  exit(ok1 && ok2 && refused == 6 ? 0 : 1);
}
