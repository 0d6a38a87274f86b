// chatty: the program that talks to the kernel all the time. Each round makes
// CALLS getpid calls, writes a line, yields, and now and then sleeps a tick.

#include "types.h"
#include "user.h"

#define ROUNDS 8
#define CALLS  50

void
chatty(void)
{
  int pid = getpid(), calls = 1, wrong = 0, round, i;

  for (round = 1; round <= ROUNDS; round++) {
    for (i = 0; i < CALLS; i++, calls++)
      if (getpid() != pid)
        wrong++;
    printf("round %d: %d system calls so far\n", round, calls);
    calls++;
    yield();
    calls++;
    if (round % 4 == 0) {
      sleep(1);
      calls++;
    }
  }
  printf("%d system calls in all, getpid always %d: %s\n", calls + 1, pid,
         wrong ? "no" : "yes");
  exit(wrong ? 1 : 0);
}
