"""hello on QEMU. QEMU is the judge of what a guest prints (DESIGN.md, "Guests"): these
are the bytes pvtool's native and paravirtualized runs of hello must reproduce."""

from tests.oracles import guest_path, run_qemu

# cr3 is the address of hello's page directory, fixed by the link (kernel.ld). A change
# to hello that moves it changes this line: take the new value from QEMU's output.
HELLO_OUTPUT = (
    b"hello: multiboot handoff ok\n"
    b"gdt: flat code and data loaded, segment registers reloaded\n"
    b"pic: all lines masked ok\n"
    b"idt: int3 trapped 1 time(s), registers kept ok\n"
    b"paging: 4 MiB identity map, cr3=0x107000 ok\n"
    b"eflags: cli clears IF, sti sets it ok\n"
    b"eflags: popf restores IF set and clear ok\n"
    b"hello: all 13 checks passed\n"
)


def test_hello_passes_every_check_and_exits_0_on_qemu():
    result = run_qemu(guest_path("hello"), timeout=30)

    assert result.stdout == HELLO_OUTPUT
    assert result.guest_code == 0
