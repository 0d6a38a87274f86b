# pvtool: `make demo` runs the main job on the bundled guest, `make test` the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PVTOOL := $(BIN)/pvtool

# ---- guests: freestanding x86-32 kernels (guests/NAME -> build/guests/NAME.elf).
# The PC guests are Multiboot kernels for a PC; xenhello is written for Xen itself.
PC_GUESTS    := hello minikern nanobench sieve ioheavy probeboot probefw apicprobe cgacon \
                taskswitch pcprobe probecfg portscan pitprobe biggdt modcmd datatext
# PC guests with an entry of their own (highhalf and hhpse start in the low half,
# paging off).
OWN_ENTRY_GUESTS := highhalf hhpse
XEN_GUESTS   := xenhello
GUESTS       := $(PC_GUESTS) $(OWN_ENTRY_GUESTS) $(XEN_GUESTS)
CC           := gcc
LD           := ld
GUEST_CFLAGS := -m32 -march=i686 -std=gnu11 -O2 -ffreestanding -fno-pic -fno-pie \
                -fno-stack-protector -fno-builtin -fno-asynchronous-unwind-tables \
                -fno-omit-frame-pointer -mgeneral-regs-only -nostdlib \
                -Wall -Wextra -Werror -Iguests/include
GUEST_ASFLAGS := -m32 -march=i686 -fno-pic -fno-pie -Iguests/include
GUEST_LDFLAGS := -m elf_i386 -nostdlib --build-id=none -z noexecstack

# Every PC guest also links all of the library guests/lib (guests/include/lib.h says
# what it holds), compiled per guest into build/guests/NAME/lib/ so each guest's flags
# apply to it. A Xen guest links none of it: no Multiboot header, no PC entry, no PC
# devices.
GUEST_LIB_SRCS := $(wildcard guests/lib/*.c guests/lib/*.S)

# guest_rules(NAME, LIBRARY SOURCES): how build/guests/NAME.elf is made. A guest is
# linked with its own guests/NAME/kernel.ld, or else with guests/lib/kernel.ld.
define guest_rules
$(1)_SRCS := $$(wildcard guests/$(1)/*.c guests/$(1)/*.S)
$(1)_OBJS := $$(patsubst guests/$(1)/%,build/guests/$(1)/%.o,$$($(1)_SRCS)) \
             $$(patsubst guests/lib/%,build/guests/$(1)/lib/%.o,$(2))
$(1)_HDRS := $$(wildcard guests/$(1)/*.h guests/include/*.h)
$(1)_LDS  := $$(firstword $$(wildcard guests/$(1)/kernel.ld) guests/lib/kernel.ld)

build/guests/$(1)/%.c.o: guests/$(1)/%.c $$($(1)_HDRS)
	@mkdir -p $$(@D)
	$$(CC) $$(GUEST_CFLAGS) -c $$< -o $$@

build/guests/$(1)/%.S.o: guests/$(1)/%.S $$($(1)_HDRS)
	@mkdir -p $$(@D)
	$$(CC) $$(GUEST_ASFLAGS) -c $$< -o $$@

build/guests/$(1)/lib/%.c.o: guests/lib/%.c $$($(1)_HDRS)
	@mkdir -p $$(@D)
	$$(CC) $$(GUEST_CFLAGS) -c $$< -o $$@

build/guests/$(1)/lib/%.S.o: guests/lib/%.S $$($(1)_HDRS)
	@mkdir -p $$(@D)
	$$(CC) $$(GUEST_ASFLAGS) -c $$< -o $$@

build/guests/$(1).elf: $$($(1)_OBJS) $$($(1)_LDS)
	$$(LD) $$(GUEST_LDFLAGS) -T $$($(1)_LDS) -o $$@ $$($(1)_OBJS)
endef
$(foreach g,$(PC_GUESTS),$(eval $(call guest_rules,$(g),$(GUEST_LIB_SRCS))))
$(foreach g,$(OWN_ENTRY_GUESTS),$(eval $(call guest_rules,$(g),$(filter-out guests/lib/entry.S,$(GUEST_LIB_SRCS)))))
$(foreach g,$(XEN_GUESTS),$(eval $(call guest_rules,$(g),)))

GUEST_ELFS := $(GUESTS:%=build/guests/%.elf)

# ---- guests: freestanding x86-64 kernels, linked in the top 2 GiB as Linux is
# ---- (-mcmodel=kernel; no red zone, since interrupts push onto the kernel's stack).
# minikern64 and nanobench64 are Multiboot kernels for a PC with an entry of their own
# for long mode (guests/lib64/entry.S); xenhello64 is written for Xen's 64-bit PV ABI.
PC64_GUESTS  := minikern64 nanobench64
XEN64_GUESTS := xenhello64
GUEST64_CFLAGS  := -m64 -mcmodel=kernel -mno-red-zone -std=gnu11 -O2 -ffreestanding \
                   -fno-pic -fno-pie -fno-stack-protector -fno-builtin \
                   -fno-asynchronous-unwind-tables -fno-omit-frame-pointer \
                   -mgeneral-regs-only -nostdlib -Wall -Wextra -Werror
GUEST64_ASFLAGS := -m64 -fno-pic -fno-pie
GUEST64_LDFLAGS := -m elf_x86_64 -nostdlib --build-id=none -z noexecstack \
                   -z max-page-size=0x1000

# The 64-bit library: guests/lib64 (the long-mode entry, traps, descriptor tables,
# context switch) and the portable C of guests/lib, compiled for 64 bits.
# guests/include64 has the 64-bit versions of the library's headers and comes
# before guests/include, whose width-neutral headers (traps.h, apic.h) serve both.
GUEST64_LIB_SRCS := $(wildcard guests/lib64/*.c guests/lib64/*.S) \
                    $(addprefix guests/lib/,check.c exit.c printf.c uart.c)

# minikern64 is minikern's port to x86-64, as Linux's arch/x86_64 was a port of
# arch/i386: it shares minikern's processes and scheduler, drivers, locks, system
# calls, self-tests and user programs (compiled for 64 bits from guests/minikern)
# and minikern's headers (on its include path after its own), and has its own
# memory, trap and entry code, self-tests of its own (selftest64.c) and the
# architecture's halves of a process (thread.c) and of a system call (sysargs.c).
MINIKERN64_SHARED := $(addprefix guests/minikern/,bootcount.c ide.c picirq.c \
                     proc.c selftest.c spinlock.c string.c syscall.c sysproc.c \
                     timer.c ulib.c uprimes.c uchatty.c umapper.c uintruder.c)

# guest64_rules(NAME, SOURCES FROM OTHER DIRECTORIES, EXTRA INCLUDE DIRECTORIES): how
# build/guests/NAME.elf is made, each source guests/DIR/FILE compiled into
# build/guests/NAME/DIR/FILE.o, and linked with guests/NAME/kernel.ld, or else with
# minikern64's (the higher-half layout every 64-bit PC guest has; a guest without
# user programs leaves its user section empty).
define guest64_rules
$(1)_SRCS := $$(wildcard guests/$(1)/*.c guests/$(1)/*.S) $(2)
$(1)_OBJS := $$(patsubst guests/%,build/guests/$(1)/%.o,$$($(1)_SRCS))
$(1)_INCS := -Iguests/$(1) -Iguests/include64 $(3:%=-I%) -Iguests/include
$(1)_HDRS := $$(wildcard guests/$(1)/*.h guests/include64/*.h guests/include/*.h \
                          $(3:%=%/*.h))
$(1)_LDS  := $$(firstword $$(wildcard guests/$(1)/kernel.ld) guests/minikern64/kernel.ld)

build/guests/$(1)/%.c.o: guests/%.c $$($(1)_HDRS)
	@mkdir -p $$(@D)
	$$(CC) $$(GUEST64_CFLAGS) $$($(1)_INCS) -c $$< -o $$@

build/guests/$(1)/%.S.o: guests/%.S $$($(1)_HDRS)
	@mkdir -p $$(@D)
	$$(CC) $$(GUEST64_ASFLAGS) $$($(1)_INCS) -c $$< -o $$@

build/guests/$(1).elf: $$($(1)_OBJS) $$($(1)_LDS)
	$$(LD) $$(GUEST64_LDFLAGS) -T $$($(1)_LDS) -o $$@ $$($(1)_OBJS)
endef
$(eval $(call guest64_rules,minikern64,$(GUEST64_LIB_SRCS) $(MINIKERN64_SHARED),guests/minikern))
# nanobench64 shares nanobench.h and measure.c with the 32-bit nanobench.
$(eval $(call guest64_rules,nanobench64,$(GUEST64_LIB_SRCS) guests/nanobench/measure.c,guests/nanobench))
$(foreach g,$(XEN64_GUESTS),$(eval $(call guest64_rules,$(g),,)))

GUEST_ELFS += $(PC64_GUESTS:%=build/guests/%.elf) $(XEN64_GUESTS:%=build/guests/%.elf)

# ---- minikern ported to Xen by hand, as XenoLinux was from Linux: guests/ with the
# ---- port's unified diffs (patches/minikern-xen/: arch.diff changes minikern's own
# ---- files and its library, xen.diff adds the Xen-specific ones) applied by GNU patch
# ---- into build/src/minikern-xen/, and compiled from there, so that `pvtool diffstat
# ---- patches/minikern-xen/*.diff --baseline guests` measures the port.
XENPORT_PATCHES := $(sort $(wildcard patches/minikern-xen/*.diff))
XENPORT_SRC     := build/src/minikern-xen
XENPORT_OBJ     := build/guests/minikern-xen
XENPORT_DIRS    := minikern lib xen
XENPORT_CFLAGS  := $(filter-out -Iguests/include,$(GUEST_CFLAGS)) \
                   $(foreach d,include minikern xen xenhello,-I$(XENPORT_SRC)/$(d))
XENPORT_ASFLAGS := $(filter-out -Iguests/include,$(GUEST_ASFLAGS)) \
                   $(foreach d,include minikern xen xenhello,-I$(XENPORT_SRC)/$(d))

$(XENPORT_SRC)/.patched: $(XENPORT_PATCHES) $(wildcard guests/*/*)
	rm -rf $(XENPORT_SRC)
	@mkdir -p $(XENPORT_SRC)
	cp -R guests/. $(XENPORT_SRC)/
	for p in $(XENPORT_PATCHES); do patch -s -p1 -d $(XENPORT_SRC) < $$p || exit 1; done
	@touch $@

# The patched tree's sources are known only once it exists: compiled in one recipe.
build/guests/minikern-xen.elf: $(XENPORT_SRC)/.patched
	rm -rf $(XENPORT_OBJ)
	set -e; for src in $(XENPORT_DIRS:%=$(XENPORT_SRC)/%/*.[cS]); do \
	  obj=$(XENPORT_OBJ)/$${src#$(XENPORT_SRC)/}.o; mkdir -p $$(dirname $$obj); \
	  case $$src in \
	    *.c) $(CC) $(XENPORT_CFLAGS) -c $$src -o $$obj ;; \
	    *.S) $(CC) $(XENPORT_ASFLAGS) -c $$src -o $$obj ;; \
	  esac; \
	done
	$(LD) $(GUEST_LDFLAGS) -T $(XENPORT_SRC)/minikern/kernel.ld -o $@ \
	  $$(find $(XENPORT_OBJ) -name '*.o' | sort)

GUEST_ELFS += build/guests/minikern-xen.elf

.PHONY: all demo port-diffstat test test-fast fuzz fuzz-hypercalls fuzz-images wheel wheel-check bench linux guests lint clean distclean

all: guests

guests: $(GUEST_ELFS)

# constraints.txt pins every package .venv gets (it says how to update it).
PIP_INSTALL := pip install --quiet --disable-pip-version-check -c constraints.txt
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/$(PIP_INSTALL) -e '.[dev,plot]'
	@touch $@

# ---- the main job on the first guest: patch it, boot it natively and paravirtualized,
# ---- and measure how invasive the port was.
demo: $(STAMP) guests
	$(PVTOOL) patch build/guests/hello.elf -o build/hello.pv.elf
	@echo "== native =="
	$(PVTOOL) run --native build/guests/hello.elf
	@echo "== paravirtualized =="
	$(PVTOOL) run build/hello.pv.elf
	@echo "== diffstat =="
	$(PVTOOL) diffstat build/hello.pv.diff

# ---- minikern ported by hand (patches/minikern-xen) beside its automatic port by
# ---- `pvtool patch` (xen32) and its 64-bit port's (minikern64, xen64): Table 2's lines,
# ---- one kernel ported both ways, and the automatic port at both widths.
port-diffstat: $(STAMP) build/guests/minikern.elf build/guests/minikern64.elf
	$(PVTOOL) patch build/guests/minikern.elf -o build/minikern.pv.elf
	$(PVTOOL) patch build/guests/minikern64.elf -o build/minikern64.pv.elf
	$(PVTOOL) diffstat patches/minikern-xen --baseline guests --versus build/minikern.pv.diff \
		--versus build/minikern64.pv.diff

# ---- the same guests native, paravirtualized (and trap-and-emulated when pvtool has it),
# ---- and native beside qemu-system-i386, or -x86_64 for the 64-bit ones (sieve
# ---- computes, ioheavy exits), against limits measured in the same run; tables on
# ---- stdout, figures in build/bench/. A mode that cannot run a guest says why in its row.
# ---- The patcher's rows also cover Debian's Linux when `make linux` has fetched it.
BENCH_GUESTS := minikern hello nanobench sieve ioheavy minikern64 nanobench64
bench: $(STAMP) guests
	@mkdir -p build/bench
	$(PVTOOL) bench $(BENCH_GUESTS:%=build/guests/%.elf) --json build/bench/results.json \
		$(if $(wildcard $(LINUX)),--patch-only $(LINUX))

# ---- Debian's 32-bit Linux (the newest linux-image-*-686-unsigned:i386; needs root for
# ---- dpkg and apt-get update), patched, and its Table-2 row beside Xen's hand port.
# ---- For measuring only: never in `make test`.
LINUX := build/linux/vmlinux
linux: $(LINUX)
	$(PVTOOL) patch $(LINUX) -o build/linux/vmlinux.pv.elf
	$(PVTOOL) diffstat build/linux/vmlinux.pv.diff

$(LINUX): | $(STAMP)
	dpkg --print-foreign-architectures | grep -qx i386 || dpkg --add-architecture i386
	apt-get update
	$(BIN)/python -m pvtool.bench.linux_image $@

# ---- the suite on every core (pytest-xdist); the tests that take longest are stolen
# ---- by an idle worker. CI=true (or pytest --hypothesis-profile=ci) fuzzes at full strength.
# ---- Progress as tests done of all, the workers' count in the header, the ten slowest
# ---- at the end. `make test-fast` leaves out the tests tests/conftest.py marks slow.
TEST_WORKERS ?= auto
PYTEST := $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal -o console_output_style=count \
          --durations=10
test: $(STAMP) guests
	$(PYTEST)

test-fast: $(STAMP) guests
	$(PYTEST) -m "not slow"

# ---- A long fuzzing campaign, never in CI: the hypercall fuzzer (both paging modes,
# ---- invariants checked after every call) and the image fuzzer at the counts their
# ---- modules state for it (tests/profiles.py's "campaign": a million hypercalls, ten
# ---- thousand mutated images), at the lowest priority, hypothesis's example database
# ---- in build/hypothesis. The hypercall half runs on one core and prints its figures
# ---- so far every 50 random-caller seeds; the image half in shards on two cores
# ---- (pytest-xdist), each shard's progress every 500 images in
# ---- build/campaign/progress.log. Each half ends with its figures, every shard's
# ---- added up. FUZZ_SEED makes the image half's run repeatable (its shards' seeds).
# ---- The random callers first: most of the million hypercalls, fastest.
FUZZ_HYPERCALLS := tests/hv/test_fuzz_hypercalls.py
FUZZ_TESTS := $(FUZZ_HYPERCALLS)::test_random_callers_keep_the_hypervisor_whole \
              $(FUZZ_HYPERCALLS)::test_hypercalls_keep_the_hypervisor_whole \
              $(FUZZ_HYPERCALLS)::test_a_guest_calling_at_random_always_stops_cleanly
FUZZ_SEED ?= $(shell date +%s)
fuzz: fuzz-hypercalls fuzz-images

fuzz-hypercalls: $(STAMP) guests
	@mkdir -p build/hypothesis
	nice -n 19 $(BIN)/pytest -p no:xdist -s -q --hypothesis-profile=campaign $(FUZZ_TESTS)

fuzz-images: $(STAMP) guests
	@mkdir -p build/hypothesis
	PVTOOL_FUZZ_SEED=$(FUZZ_SEED) nice -n 19 $(BIN)/pytest -n 2 -q \
	    --hypothesis-profile=campaign tests/test_fuzz_images.py

# ---- The wheel `pip install .` builds, made by .venv's own setuptools (offline) from a
# ---- copy of the sources, so that nothing a build leaves in the checkout reaches it.
# ---- It needs .venv as it is (tests/test_packaging.py runs it while the suite runs).
WHEEL_DIR := build/wheel
wheel:
	rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)/src
	cp -r pyproject.toml README.md patches pvtool $(WHEEL_DIR)/src/
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation -w $(WHEEL_DIR) $(WHEEL_DIR)/src

# ---- That wheel as a user gets it: installed into a fresh venv with the pinned
# ---- dependencies and run from there: hello patched and booted paravirtualized, every
# ---- step's status 0, its serial output that of the same wheel's native boot.
WHEEL_VENV   := $(WHEEL_DIR)/venv
WHEEL_PVTOOL := $(CURDIR)/$(WHEEL_VENV)/bin/pvtool
HELLO        := $(CURDIR)/build/guests/hello.elf
wheel-check: $(STAMP) guests
	$(MAKE) wheel
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/$(PIP_INSTALL) $(WHEEL_DIR)/pvtool-*.whl
	cd $(WHEEL_DIR) && $(WHEEL_PVTOOL) patch $(HELLO) -o hello.pv.elf
	cd $(WHEEL_DIR) && $(WHEEL_PVTOOL) run --native $(HELLO) >native.out
	cd $(WHEEL_DIR) && $(WHEEL_PVTOOL) run hello.pv.elf >pv.out
	test -s $(WHEEL_DIR)/native.out && cmp $(WHEEL_DIR)/native.out $(WHEEL_DIR)/pv.out

lint: $(STAMP)
	$(BIN)/ruff check pvtool tests

clean:
	rm -rf build

distclean: clean
	rm -rf $(VENV) *.egg-info
