// primes: the compute-bound program. It sieves the primes below N, over and over,
// in pages it maps for the purpose, and checks every round finds the same ones.
// It keeps going for at least MINTICKS clock ticks, so that however fast the
// machine, the timer has to preempt it along the way.

#include "types.h"
#include "user.h"
#include "memlayout.h"

#define N         50000
#define NPAGES    ((N + PGSIZE - 1) / PGSIZE)
#define MINROUNDS 3
#define MINTICKS  10

// One sieve of Eratosthenes over fresh (zeroed) pages: composite[i] is set for
// every composite i. Returns how many primes there are, and the largest.
static int
sieve(char *composite, int *largest)
{
  int i, j, count = 0;

  *largest = 0;
  for (i = 2; i < N; i++) {
    if (composite[i])
      continue;
    count++;
    *largest = i;
    for (j = i * 2; j < N; j += i)
      composite[j] = 1;
  }
  return count;
}

static int
mapsieve(char *va, int map_or_unmap)
{
  int i;

  for (i = 0; i < NPAGES; i++)
    if ((map_or_unmap ? map(va + i * PGSIZE) : unmap(va + i * PGSIZE)) < 0)
      return -1;
  return 0;
}

void
primes(void)
{
  char *composite = (char *)UMAPBASE;
  int rounds, count, largest = 0, first = 0, firstlargest = 0, agree = 1;
  int start = uptime();

  for (rounds = 0; rounds < MINROUNDS || uptime() - start < MINTICKS; rounds++) {
    if (mapsieve(composite, 1) < 0) {
      printf("cannot map %d pages\n", NPAGES);
      exit(1);
    }
    count = sieve(composite, &largest);
    mapsieve(composite, 0);
    if (rounds == 0) {
      first = count;
      firstlargest = largest;
    } else if (count != first || largest != firstlargest) {
      agree = 0;
    }
  }
  printf("%d primes below %d, the largest %d\n", first, N, firstlargest);
  printf("every round found the same primes: %s\n", agree ? "yes" : "no");
  exit(agree && first == 5133 && firstlargest == 49999 ? 0 : 1);
}
