// A minimal printf for the console: enough for deterministic status lines.

#include <stdarg.h>

#include "types.h"
#include "lib.h"

// Where cprintf's characters go: COM1, unless the guest links a console of its own
// (a strong consputc, as highhalf's console.c, which writes the CGA screen too).
__attribute__((weak)) void
consputc(int c)
{
  uartputc(c);
}

static void
printint(uint x, uint base, int sign)
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
    consputc(buf[i]);
}

static void
printstr(const char *s)
{
  if (s == 0)
    s = "(null)";
  for (; *s; s++)
    consputc(*s);
}

void
cprintf(const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      consputc(*fmt);
      continue;
    }
    switch (*++fmt) {
    case 'd':
      printint(va_arg(ap, int), 10, 1);
      break;
    case 'u':
      printint(va_arg(ap, uint), 10, 0);
      break;
    case 'x':
      printint(va_arg(ap, uint), 16, 0);
      break;
    case 's':
      printstr(va_arg(ap, const char *));
      break;
    case 'c':
      consputc(va_arg(ap, int));
      break;
    case '%':
      consputc('%');
      break;
    case '\0':  // a lone '%' at the end
      va_end(ap);
      return;
    default:    // unknown: print it as written, so the mistake shows
      consputc('%');
      consputc(*fmt);
      break;
    }
  }
  va_end(ap);
}
