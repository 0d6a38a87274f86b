// The PS/2 mouse behind the 8042 (IBM PS/2 Technical Reference; Linux's
// i8042.c and psmouse): enable the auxiliary port and its interrupt, then send the
// mouse commands through 0xD4 and read its answers, which arrive with the status
// register's auxiliary bit set and raise IRQ 12.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

#define DATA 0x60
#define STATUS 0x64
#define ST_OBF 0x01
#define ST_IBF 0x02
#define ST_AUX 0x20
#define READ_CMDBYTE 0x20
#define WRITE_CMDBYTE 0x60
#define AUX_DISABLE 0xA7
#define AUX_ENABLE 0xA8
#define AUX_TEST 0xA9
#define WRITE_AUX_BUFFER 0xD3
#define TO_AUX 0xD4
#define CMD_AUX_IRQ 0x02
#define AUX_IRQ 12
#define SPINS 100000

static void
send(ushort port, uchar value)
{
  int i;

  for (i = 0; i < SPINS && (inb(STATUS) & ST_IBF); i++)
    ;
  outb(port, value);
}

// Print every byte the 8042 has for us, each with the status it came with.
static void
drain(void)
{
  int i, st;

  for (i = 0; i < SPINS; i++) {
    st = inb(STATUS);
    if (!(st & ST_OBF))
      continue;
    cprintf(" %x/%x", inb(DATA), st);
    i = 0;
  }
  cprintf("\n");
}

static void
controller(const char *name, uchar cmd)
{
  cprintf("8042 %s:", name);
  send(STATUS, cmd);
  drain();
}

static void
mouse(const char *name, uchar cmd)
{
  cprintf("mouse %s:", name);
  send(STATUS, TO_AUX);
  send(DATA, cmd);
  drain();
  cprintf("irq12 %d\n", irq_requested(AUX_IRQ));
}

// Linux's psmouse knocks with three sample rates to find a wheel mouse.
static void
knock(uchar a, uchar b, uchar c)
{
  uchar rates[3] = {a, b, c};
  int i;

  cprintf("mouse knock %d %d %d:", a, b, c);
  for (i = 0; i < 3; i++) {
    send(STATUS, TO_AUX);
    send(DATA, 0xF3);
    send(STATUS, TO_AUX);
    send(DATA, rates[i]);
  }
  drain();
}

void
aux_probe(void)
{
  uchar cmdbyte;

  cprintf("8042 status %x, irq12 %d\n", inb(STATUS), irq_requested(AUX_IRQ));
  controller("read command byte", READ_CMDBYTE);
  controller("aux test", AUX_TEST);
  controller("aux enable", AUX_ENABLE);
  send(STATUS, READ_CMDBYTE);
  while (!(inb(STATUS) & ST_OBF))
    ;
  cmdbyte = inb(DATA);
  send(STATUS, WRITE_CMDBYTE);
  send(DATA, cmdbyte | CMD_AUX_IRQ);
  controller("read command byte", READ_CMDBYTE);
  mouse("get id", 0xF2);
  mouse("reset", 0xFF);
  mouse("status request", 0xE9);
  knock(200, 100, 80);
  mouse("get id", 0xF2);
  mouse("set resolution", 0xE8);
  mouse("resolution 3", 3);
  mouse("scaling 2:1", 0xE7);
  mouse("enable", 0xF4);
  mouse("remote", 0xF0);
  mouse("status request", 0xE9);
  mouse("read data", 0xEB);
  mouse("wrap", 0xEE);
  mouse("echo 0x5a", 0x5A);
  mouse("reset wrap", 0xEC);
  mouse("set defaults", 0xF6);
  mouse("status request", 0xE9);
  mouse("unknown", 0x01);
  controller("aux disable", AUX_DISABLE);
  mouse("get id while disabled", 0xF2);
  controller("read command byte", READ_CMDBYTE);
  controller("aux disable", AUX_DISABLE);
  cprintf("8042 write aux buffer while disabled:");
  send(STATUS, WRITE_AUX_BUFFER);
  send(DATA, 0x77);
  drain();
  controller("aux enable", AUX_ENABLE);
  mouse("reset", 0xFF);
  controller("aux disable", AUX_DISABLE);
  send(STATUS, WRITE_CMDBYTE);
  send(DATA, cmdbyte);
}
