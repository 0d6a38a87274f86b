"""probecfg booted natively by pvtool next to QEMU: the fw_cfg device's signature, ID,
items, the blobs -kernel provides, the file directory and files, and its DMA
interface print the same bytes on the serial line, with two memory sizes and with and
without a command line and modules.

pvtool's DSDT is not QEMU's (machine/firmware/acpi.py), so the digest of the ACPI
tables' file is the one thing left out of the comparison; its first bytes (the FACS and
the DSDT's header), the RSDP and the table-loader script are compared."""

from functools import partial

import pytest

from tests import cli
from tests.oracles import guest_path, run_qemu

pvtool_run = partial(cli.pvtool, "run", process=True, timeout=120)
ACPI_TABLES = b"  etc/acpi/tables:"


def without_dsdt_digest(output: bytes) -> list[bytes]:
    """OUTPUT's lines, the digest of the ACPI tables' file (the last word of the line
    after its directory line) left out."""
    lines = output.split(b"\n")
    for i, line in enumerate(lines[:-1]):
        if line.startswith(ACPI_TABLES):
            lines[i + 1] = lines[i + 1].rsplit(b" ", 1)[0]
    return lines


@pytest.mark.parametrize("mib, append, modules", [
    (64, None, 0),
    (256, "hello world", 2),
])
def test_native_probecfg_prints_qemus_fw_cfg(tmp_path, mib, append, modules):
    elf = guest_path("probecfg")
    paths = []
    for n in range(modules):  # a page and a bit, then a few bytes: both get padded
        paths.append(tmp_path / f"module{n}.bin")
        paths[-1].write_bytes(bytes(range(256)) * 17 if n == 0 else b"module two")
    qemu_args = ["-m", str(mib)]
    pvtool_args = ["--memory", str(mib)]
    if append is not None:
        qemu_args += ["-append", append]
        pvtool_args += ["--cmdline", append]
    if paths:
        qemu_args += ["-initrd", ",".join(map(str, paths))]
        pvtool_args += [arg for path in paths for arg in ("--module", path)]
    judge = run_qemu(elf, timeout=60, extra_args=qemu_args)

    done = pvtool_run("--native", "--quiet", *pvtool_args, str(elf))

    assert without_dsdt_digest(done.stdout_bytes) == without_dsdt_digest(judge.stdout)
    assert judge.guest_code == 0, judge.stdout.decode(errors="replace")
    assert done.status == judge.guest_code
    for found in (b"signature 51454d55", b"files: 13\n", b"etc/e820: 14 bytes",
                  b"dma write 4: status 1", ACPI_TABLES):
        assert found in done.stdout_bytes  # the probe found what it compares
