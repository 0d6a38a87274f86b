// intruder: writes to kernel memory, which ring 3 may not touch. The page-fault
// handler must kill it before the write lands (main.c checks the canary after).

#include "types.h"
#include "user.h"

extern uint kcanary;  // a kernel variable (main.c): user code can name it, not write it

void
intruder(void)
{
  printf("writing to kernel memory\n");
  kcanary = 0;
  printf("the write went through\n");
  exit(1);
}
