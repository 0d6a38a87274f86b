// sieve: the compute-bound guest of `pvtool bench`'s comparison with QEMU. It sieves
// the primes below N with Eratosthenes' method, ROUNDS times over, and checks every
// round finds pi(N) of them. Nothing but the console and the exit is port I/O, and
// interrupts stay off: nearly every instruction is plain computation, so its time is
// the CPU emulator's speed and little else.

#include "types.h"
#include "x86.h"
#include "lib.h"

#define N       1000000
#define PRIMES  78498    // pi(10^6): the number of primes below N
#define LARGEST 999983   // the largest of them
#define ROUNDS  10       // sized for a few seconds under pvtool's native mode

static char composite[N];

// One sieve over the whole table: clear it, then mark every multiple of each prime
// from its square on. Returns how many primes there are, and the largest.
static int
sieve(int *largest)
{
  int i, j, count = 0;

  for (i = 0; i < N; i++)
    composite[i] = 0;
  *largest = 0;
  for (i = 2; i < N; i++) {
    if (composite[i])
      continue;
    count++;
    *largest = i;
    if (i < N / i)
      for (j = i * i; j < N; j += i)
        composite[j] = 1;
  }
  return count;
}

// sieve loads no IDT and never enables interrupts, so nothing should come here; the
// library's trap entry calls it all the same.
void
trap(struct trapframe *tf)
{
  cprintf("trap: unexpected vector %d\n", tf->trapno);
  debug_exit(1);
}

void
main(uint magic, uint mbinfo)
{
  int round, count, largest, passed = 1;

  (void)magic;
  (void)mbinfo;
  uartinit();
  for (round = 0; round < ROUNDS; round++) {
    count = sieve(&largest);
    passed &= check(count == PRIMES) & check(largest == LARGEST);
  }
  cprintf("sieve: %d rounds, %d primes below %d, the largest %d %s\n", ROUNDS, count, N,
          largest, verdict(passed));
  checkexit("sieve");
}
