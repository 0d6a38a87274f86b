// A guest's checks of itself: each is counted, passed or failed, and the guest ends
// by saying how many passed and leaving through isa-debug-exit with 0 if all did.

#include "types.h"
#include "lib.h"

static int nchecks, nfailed;

// Count one check. Callers combine checks with '&', not '&&', so every check runs
// and the count is the same whatever fails.
int
check(int passed)
{
  nchecks++;
  if (!passed)
    nfailed++;
  return passed != 0;
}

const char *
verdict(int passed)
{
  return passed ? "ok" : "FAIL";
}

// The guest's last line, and its exit code: 0 if every check passed, else 1.
void
checkexit(const char *guest)
{
  if (nfailed == 0)
    cprintf("%s: all %d checks passed\n", guest, nchecks);
  else
    cprintf("%s: %d of %d checks FAILED\n", guest, nfailed, nchecks);
  debug_exit(nfailed == 0 ? 0 : 1);
}
