"""A device's DMA over code the CPU already ran: the next run of that code is the new
code, on pvtool's PC as on QEMU's (QEMU invalidates the translated blocks of the
pages its DMA writes; pvtool's GuestMemory.write_phys has QEMU do the same,
machine/memory.py). The device is fw_cfg, whose DMA interface writes guest memory
(QEMU's docs/specs/fw_cfg.txt): it reads the 4-byte signature "QEMU" over four nops
of a function the guest called once, and "QEMU" is code too: push %ecx, inc %ebp,
dec %ebp, push %ebp, which moves ESP by 8, which the function returns."""

from tests.machine.harness import assert_same_as_qemu, drop_no_translated_code, run_native

SCENARIO = """
    .include "macros.inc"
    .globl test_main
test_main:
    call code                   # translated with its nops: ESP does not move
    REC %eax
    movl $code + 2, %eax        # the descriptor's address_low, big-endian
    bswap %eax
    movl %eax, access + 12
    xorl %eax, %eax             # the DMA register's high half, then the low half
    movw $0x514, %dx            # starts the transfer
    outl %eax, %dx
    movl $access, %eax
    bswap %eax
    movw $0x518, %dx
    outl %eax, %dx
    REC access                  # the control word the device left: 0, done
    call code
    REC %eax
    xorl %eax, %eax
    ret

    .data
    .balign 16
access:                         # FWCfgDmaAccess, big-endian: select key 0 and read
    .long 0x0a000000, 0x04000000, 0, 0
    .balign 4096
code:
    movl %esp, %edx
    nop                         # the DMA's four bytes land here
    nop
    nop
    nop
    movl %edx, %eax
    subl %esp, %eax
    movl %edx, %esp
    ret
"""


def test_code_a_dma_writes_over_runs_new_as_on_qemu(build):
    run = run_native(build(SCENARIO))
    assert run.records() == [0, 0, 8]
    assert_same_as_qemu(run)


def test_without_the_invalidation_the_old_code_would_run(build, monkeypatch):
    """What the test above proves: with QEMU's invalidation left out, pvtool's PC
    runs the nops again, though the page holds the signature."""
    drop_no_translated_code(monkeypatch)
    run = run_native(build(SCENARIO))
    assert run.machine.memory.read_phys(run.guest["code"] + 2, 4) == b"QEMU"
    assert run.records() == [0, 0, 0]
