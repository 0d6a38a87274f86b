// The few string routines the kernel needs (and GCC may call for struct copies).

#include "types.h"
#include "defs.h"

void *
memset(void *dst, int c, uint n)
{
  char *d = dst;

  while (n-- > 0)
    *d++ = c;
  return dst;
}

void *
memmove(void *dst, const void *src, uint n)
{
  const char *s = src;
  char *d = dst;

  if (s < d && s + n > d) {  // overlapping, destination above: copy backwards
    s += n;
    d += n;
    while (n-- > 0)
      *--d = *--s;
  } else {
    while (n-- > 0)
      *d++ = *s++;
  }
  return dst;
}

// GCC emits calls to memcpy for large structure copies.
void *
memcpy(void *dst, const void *src, uint n)
{
  return memmove(dst, src, n);
}

int
memcmp(const void *v1, const void *v2, uint n)
{
  const uchar *s1 = v1, *s2 = v2;

  for (; n > 0; n--, s1++, s2++)
    if (*s1 != *s2)
      return *s1 - *s2;
  return 0;
}

// Like strncpy, but always NUL-terminates.
char *
safestrcpy(char *s, const char *t, int n)
{
  char *os = s;

  if (n <= 0)
    return os;
  while (--n > 0 && (*s++ = *t++) != 0)
    ;
  *s = 0;
  return os;
}
