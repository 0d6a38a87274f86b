// probecfg: QEMU's fw_cfg device as a kernel booted with -kernel finds it, printed on
// COM1 so that pvtool's native mode can be compared with QEMU byte for byte: the
// signature and ID, every item's first bytes and a digest of its whole contents, the
// blobs -kernel provides, the file directory and each file, the DMA interface's
// read, skip, select and refused write, and what an invalid selector and a read past
// an item's end return.
#include "types.h"
#include "multiboot.h"
#include "lib.h"
#include "x86.h"
#include "fwcfg.h"

#define CHUNK 0x10000
#define HEAD 16      // an item's bytes printed in full
#define FILE_HEAD 0x60  // a file's bytes printed in full
#define NO_ITEM 0x0040      // the first selector past the files' slots
#define ARCH_ITEMS 0x8000   // the first of the x86-specific selectors
#define ARCH_ITEM_COUNT 5
#define MULTIBOOT_INFO_SIZE 0x58
#define PCI_HOLE 0xE0000000  // no RAM and no device there, whatever -m says

static uchar buf[CHUNK];

// LEN bytes of the selected item from its current offset on, by DMA a chunk at a
// time, folded into one digest.
static uint
dma_digest(uint len)
{
  uint h = FNV_START;

  while (len) {
    uint n = len < CHUNK ? len : CHUNK;
    cfg_dma(FW_CFG_DMA_READ, buf, n);
    h = digest(h, buf, n);
    len -= n;
  }
  return h;
}

// KEY's first SHOWN bytes through the data port, then a digest of LEN bytes by DMA
// from the start again (a short item reads as zeros past its end).
static void
show_item(ushort key, uint shown, uint len)
{
  uchar head[FILE_HEAD];

  cfg_select(key);
  cfg_read(head, shown);
  cprintf("  ");
  hexword(key);
  cprintf(" ");
  hexbytes(head, shown);
  cfg_dma(key << 16 | FW_CFG_DMA_SELECT, buf, 0);
  cprintf(" ");
  hexword(dma_digest(len));
  cprintf("\n");
}

static uint
read_u32(ushort key)
{
  uint value;

  cfg_select(key);
  cfg_read(&value, 4);
  return value;
}

static void
probe_identity(void)
{
  uchar sig[6], dma[8];

  cfg_select(FW_CFG_SIGNATURE);
  cfg_read(sig, 6);
  cprintf("signature ");
  hexbytes(sig, 6);
  cfg_select(FW_CFG_SIGNATURE);
  uchar first = inb(FW_CFG_SELECTOR);  // a byte read of the selector reads data
  outb(FW_CFG_DATA, 0x55);             // data writes go nowhere
  cprintf(", via selector %x then %x", first, inb(FW_CFG_DATA));
  cprintf("\nid ");
  hexword(read_u32(FW_CFG_ID));
  for (int i = 0; i < 8; i++)
    dma[i] = inb(FW_CFG_DMA + i);
  cprintf("\ndma register ");
  hexbytes(dma, 8);
  cprintf("\n");
}

// Every selector below the files, the x86 ones and a few invalid ones.
static void
probe_items(void)
{
  static const ushort invalid[] = { NO_ITEM, 0x3fff, 0x4000, 0x4005, 0x8040, 0xc000 };

  cprintf("items (first bytes, digest of 4 KiB):\n");
  for (ushort key = 0; key < 0x20; key++)
    show_item(key, HEAD, 0x1000);
  for (ushort key = 0; key < ARCH_ITEM_COUNT; key++)
    show_item(ARCH_ITEMS + key, HEAD, 0x1000);
  for (uint i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
    show_item(invalid[i], HEAD, 0x1000);
}

// The blobs whose size another item gives: the image -kernel loaded, with its
// information after it, and the Multiboot information structure.
static void
probe_blobs(void)
{
  static const ushort blobs[][2] = {
    { FW_CFG_KERNEL_SIZE, FW_CFG_KERNEL_DATA },
    { FW_CFG_INITRD_SIZE, FW_CFG_INITRD_DATA },
  };

  for (uint i = 0; i < 2; i++) {
    uint size = read_u32(blobs[i][0]);
    cprintf("blob %x: %x bytes", blobs[i][1], size);
    cfg_dma(blobs[i][1] << 16 | FW_CFG_DMA_SELECT, buf, 0);
    cprintf(", digest ");
    hexword(dma_digest(size));
    cprintf("\n");
  }
  show_item(FW_CFG_INITRD_DATA, MULTIBOOT_INFO_SIZE, MULTIBOOT_INFO_SIZE);
}

static struct fw_cfg_file files[32];

// Whether NAME starts with PREFIX (and, if WHOLE, is nothing more).
static int
matches(const char *name, const char *prefix, int whole)
{
  uint i;

  for (i = 0; prefix[i]; i++)
    if (name[i] != prefix[i])
      return 0;
  return !whole || !name[i];
}

static uint
probe_directory(void)
{
  uint count;

  cfg_select(FW_CFG_FILE_DIR);
  cfg_read(&count, 4);
  count = be32(count);
  cprintf("files: %d\n", count);
  if (count > 32)
    count = 32;
  cfg_read(files, count * sizeof(files[0]));
  for (uint i = 0; i < count; i++) {
    uint size = be32(files[i].size);
    ushort select = files[i].select >> 8 | files[i].select << 8;
    cprintf("  %s: %x bytes at %x, reserved %x\n", files[i].name, size, select,
            files[i].reserved);
    if (matches(files[i].name, "genroms/", 0))  // an option ROM: code, not configuration
      show_item(select, 3, 0);
    else
      show_item(select, size < FILE_HEAD ? size : FILE_HEAD, size);
  }
  return count;
}

static const struct fw_cfg_file *
find(uint count, const char *name)
{
  for (uint i = 0; i < count; i++)
    if (matches(files[i].name, name, 1))
      return &files[i];
  return 0;
}

static void
show_dma(const char *what, uint status, uint n)
{
  cprintf("dma %s: status %x, ", what, status);
  hexbytes(buf, n);
  cprintf("\n");
}

// The DMA interface's operations one after another on one item, then the ones that
// fail or find nothing.
static void
probe_dma(uint count)
{
  const struct fw_cfg_file *e820 = find(count, "etc/e820");
  ushort key = e820 ? (e820->select >> 8 | e820->select << 8) : FW_CFG_SIGNATURE;

  for (uint i = 0; i < 32; i++)
    buf[i] = 0xAA;
  show_dma("select+skip 4", cfg_dma(key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP, buf, 4), 4);
  show_dma("read 8", cfg_dma(FW_CFG_DMA_READ, buf, 8), 8);
  cprintf("port after dma: %x\n", inb(FW_CFG_DATA));
  show_dma("write 4", cfg_dma(FW_CFG_DMA_WRITE, buf, 4), 4);
  show_dma("read 4 after write", cfg_dma(FW_CFG_DMA_READ, buf, 4), 4);
  show_dma("no operation", cfg_dma(0, buf, 4), 4);
  show_dma("signature read 8",
           cfg_dma(FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, buf, 8), 8);
  show_dma("invalid read 4",
           cfg_dma(NO_ITEM << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, buf, 4), 4);
  show_dma("invalid write 4",
           cfg_dma(NO_ITEM << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, buf, 4), 4);
  show_dma("read and write 4",
           cfg_dma(key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ | FW_CFG_DMA_WRITE, buf, 4), 4);
  cprintf("dma read into the PCI hole: status %x\n",
          cfg_dma(FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, (void *)PCI_HOLE, 4));
}

void
main(uint magic, void *info)
{
  (void)info;
  uartinit();
  check(magic == MULTIBOOT_BOOTLOADER_MAGIC);
  probe_identity();
  probe_items();
  probe_blobs();
  probe_dma(probe_directory());
  checkexit("probecfg");
}

// The probe installs no IDT, so no trap ever reaches here; the library's trap entry
// still needs the symbol.
void
trap(struct trapframe *tf)
{
  (void)tf;
  cprintf("probecfg: unexpected trap\n");
  debug_exit(2);
}
