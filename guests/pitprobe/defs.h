// pitprobe: the 8254 as a kernel finds it, printed on COM1 so that QEMU's answers and
// pvtool's can be compared byte for byte. QEMU's PIT runs on the host's clock, so only
// what is certain is printed: OUT and status bits at points where they cannot change
// (right after a load of a long count, after a wait longer than a short one), and
// counts as relations ("decreased", "reloaded", "above the count"), never raw values.
// Channel 1, whose output goes nowhere on a PC, is the probe's stopwatch.

#define PIT_CH0 0x40
#define PIT_CONTROL 0x43
#define PORT_B 0x61
#define B_GATE2 0x01
#define B_OUT2 0x20

// Control word fields (Intel 8254 datasheet, "Control Word Format").
#define SC(ch) ((ch) << 6)
#define RW_LATCH 0x00
#define RW_LSB 0x10
#define RW_MSB 0x20
#define RW_WORD 0x30
#define MODE(m) ((m) << 1)
#define BCD 0x01
#define READ_BACK 0xC0
#define RB_NO_COUNT 0x20
#define RB_NO_STATUS 0x10
#define RB_CH(ch) (2 << (ch))
#define ST_OUT 0x80
#define ST_NULL 0x40

#define LONG 0xF000   // a count no probe outlives (about 50 ms)
#define SHORT 0x100   // a count every wait outlives
#define WAIT_LIMIT 1000000  // polls before a wait gives up (an OUT or count that never moves)

// main.c
void control(int ch, int word);
void load(int ch, uint count);
uint status(int ch);
uint word(int ch);
uint latched(int ch);
int out(int ch);
int waitout(int ch, int level);
void wait(uint ticks);
void gate2(int level);
int out2(void);

// The probes, one file each.
void modes_probe(int ch);
void gate_probe(void);
void reads_probe(void);
