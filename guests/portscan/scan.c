// The port scan. Ports whose reads change what a later read sees in a way that
// depends on time, or that a read would disturb for the rest of the run, are not
// read: they print as "..", and so does any wider access that covers one. The
// ports where pvtool is known to answer otherwise than QEMU print as "--" unless
// asked for ("all" on the command line): each is named in a Departures paragraph.

#include "types.h"
#include "x86.h"
#include "lib.h"
#include "defs.h"

struct range {
  ushort first;
  ushort last;
};

// Not read, and why.
static const struct range skipped[] = {
  {0x020, 0x020},  // master 8259's IRR: which timer ticks have come yet
  {0x040, 0x042},  // 8254 counters: they count time
  {0x060, 0x060},  // 8042 data: a read takes a byte off its queue
  {0x061, 0x061},  // port B: the refresh bit toggles, OUT2 follows the 8254
  {0x071, 0x071},  // CMOS data: the clock, and register C clears on read
  {0x0A0, 0x0A0},  // slave 8259's IRR: the RTC's and others' requests
  {0x170, 0x170},  // secondary IDE data
  {0x1F0, 0x1F0},  // primary IDE data
  {0x3BA, 0x3BA},  // VGA input status (mono): retrace timing
  {0x3DA, 0x3DA},  // VGA input status (colour): retrace timing, attribute flip-flop
  {0x3F8, 0x3F8},  // COM1 receive buffer: the console
  {0x3FA, 0x3FA},  // COM1 IIR: a read clears the transmitter's interrupt
  {0x3FD, 0x3FD},  // COM1 LSR: the transmitter's progress
  {0x511, 0x511},  // fw_cfg data: a read advances the item's offset
  {0x600, 0x601},  // PM1 status: the PM timer's overflow bit follows time
  {0x608, 0x60B},  // PM timer: it counts time
};

// The ranges read: the ISA range, then what QEMU's PC decodes above it (0x480:
// no high DMA page registers; 0xB000, 0xB100: nothing, measured).
static const struct range scanned[] = {
  {0x000, 0x3FF},  // ISA devices
  {0x480, 0x48F},  // DMA high page registers
  {0x4D0, 0x4DF},  // PIIX ELCR
  {0x510, 0x51F},  // fw_cfg
  {0x600, 0x63F},  // PIIX4 PM block
  {0x700, 0x73F},  // PIIX4 SMBus
  {0xAE00, 0xAE1F},  // ACPI PCI hotplug
  {0xAF00, 0xAF1F},  // ACPI CPU hotplug
  {0xAFE0, 0xAFEF},  // GPE0 block
  {0xB000, 0xB03F},
  {0xB100, 0xB13F},
  {0xC000, 0xC0FF},  // PCI I/O BARs as SeaBIOS assigns them
  {0xCF8, 0xCFF},  // PCI configuration mechanism 1
};

// Where pvtool departs from QEMU: read only with "all", else printed as "--".
static const struct range departures[] = {
  {0x171, 0x177},  // secondary IDE as SeaBIOS's probe leaves it (ata.py)
  {0x376, 0x376},  // and its alternate status
  {0x606, 0x607},  // the gap in the PM block (acpi_pm.py)
  {0x700, 0x73F},  // the PIIX4's SMBus (pci_devices.py: its BAR is not decoded)
  {0xAE00, 0xAE1F},  // ACPI PCI hotplug
  {0xAF00, 0xAF1F},  // ACPI CPU hotplug
  {0xAFE0, 0xAFEF},  // the GPE0 block (acpi_pm.py)
  {0xC000, 0xC00F},  // the IDE's bus master registers (pci.py: BARs not decoded)
};

static int all;  // read the departures too

static int
covers(const struct range *r, uint count, uint port, int size)
{
  uint i;

  for (i = 0; i < count; i++)
    if (port <= r[i].last && port + size - 1 >= r[i].first)
      return 1;
  return 0;
}

static void
puthex(uint value, int digits)
{
  while (digits-- > 0)
    uartputc("0123456789abcdef"[(value >> (4 * digits)) & 0xF]);
}

static void
mark(char c, int size)
{
  int i;

  for (i = 0; i < 2 * size; i++)
    uartputc(c);
}

static uint
read(uint port, int size)
{
  if (size == 1)
    return inb(port);
  if (size == 2)
    return inw(port);
  return inl(port);
}

// One line: the 16 ports from FIRST (fewer if the range ends), SIZE bytes at a time.
static void
line(uint first, uint last, int size)
{
  uint port;

  cprintf("%c ", "bw?d"[size - 1]);
  puthex(first, 4);
  uartputc(':');
  for (port = first; port < first + 16 && port + size - 1 <= last; port += size) {
    uartputc(' ');
    if (covers(skipped, sizeof(skipped) / sizeof(skipped[0]), port, size))
      mark('.', size);
    else if (!all && covers(departures, sizeof(departures) / sizeof(departures[0]), port,
                            size))
      mark('-', size);
    else
      puthex(read(port, size), 2 * size);
  }
  uartputc('\n');
}

void
scan(int departures_too)
{
  uint i, port;
  int size;

  all = departures_too;
  for (size = 1; size <= 4; size *= 2)
    for (i = 0; i < sizeof(scanned) / sizeof(scanned[0]); i++)
      for (port = scanned[i].first; port <= scanned[i].last; port += 16)
        line(port, scanned[i].last, size);
}
