// The user programs' library: strlen and a printf that formats a line into a
// buffer on the stack and hands it to write() in one call.

#include <stdarg.h>

#include "types.h"
#include "user.h"

#define PRINTBUF 128

struct out {
  char buf[PRINTBUF];
  int n;
};

int
strlen(const char *s)
{
  int n;

  for (n = 0; s[n]; n++)
    ;
  return n;
}

static void
flush(struct out *o)
{
  write(1, o->buf, o->n);
  o->n = 0;
}

static void
putc(struct out *o, char c)
{
  if (o->n == PRINTBUF)
    flush(o);
  o->buf[o->n++] = c;
}

static void
printint(struct out *o, uint x, uint base, int sign)
{
  static const char digits[] = "0123456789abcdef";
  char buf[12];
  int i = 0, neg = 0;

  if (sign && (int)x < 0) {
    neg = 1;
    x = -x;
  }
  do {
    buf[i++] = digits[x % base];
  } while ((x /= base) != 0);
  if (neg)
    buf[i++] = '-';
  while (--i >= 0)
    putc(o, buf[i]);
}

// %d, %u, %x, %s, %c and %%, as the kernel's cprintf.
void
printf(const char *fmt, ...)
{
  struct out o;
  const char *s;
  va_list ap;

  o.n = 0;
  va_start(ap, fmt);
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      putc(&o, *fmt);
      continue;
    }
    switch (*++fmt) {
    case 'd':
      printint(&o, va_arg(ap, int), 10, 1);
      break;
    case 'u':
      printint(&o, va_arg(ap, uint), 10, 0);
      break;
    case 'x':
      printint(&o, va_arg(ap, uint), 16, 0);
      break;
    case 's':
      for (s = va_arg(ap, const char *); s && *s; s++)
        putc(&o, *s);
      break;
    case 'c':
      putc(&o, va_arg(ap, int));
      break;
    case '\0':
      fmt--;
      break;
    default:
      putc(&o, '%');
      putc(&o, *fmt);
      break;
    }
  }
  va_end(ap);
  flush(&o);
}
