"""Debian's 32-bit Linux kernel as an ELF vmlinux, for measuring the patcher at Linux's
size (`make linux`; never in the tests): `python -m pvtool.bench.linux_image OUT [--deb
FILE]` writes OUT from the newest linux-image-<version>-686-unsigned:i386 package, or
from a package already downloaded.

The package holds a bzImage, not an ELF: the boot protocol's setup code, then the
protected-mode part, a small decompressor whose payload is the vmlinux ELF compressed
with xz (Documentation/arch/x86/boot.rst: setup_sects at 0x1F1, payload_offset and
payload_length at 0x248, relative to the protected-mode part, which starts after the
(setup_sects + 1) sectors of 512 bytes; a setup_sects of 0 means 4). Each step that
fails says which, in one line.
"""

import lzma
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from pvtool.errors import ImageError, InputMissingError, OutputError, PvtoolError
from pvtool.image.writer import write_atomically

PACKAGE = re.compile(r"^linux-image-(\d+)\.(\d+)\.(\d+)-(\d+)-686-unsigned$")
SETUP_SECTS, BOOT_MAGIC, PAYLOAD = 0x1F1, 0x202, 0x248
SECTOR = 512
XZ_MAGIC = b"\xfd7zXZ\x00"
ELF_MAGIC = b"\x7fELF"


class FetchError(PvtoolError):
    """A step of fetching or unpacking the package failed (EX_UNAVAILABLE)."""

    exit_status = 69


def vmlinux_of_bzimage(bzimage: bytes, name: str = "bzImage") -> bytes:
    """The ELF vmlinux a bzImage carries as its xz payload."""
    if len(bzimage) < PAYLOAD + 8 or bzimage[BOOT_MAGIC:BOOT_MAGIC + 4] != b"HdrS":
        raise ImageError(f"{name}: not a bzImage (no HdrS boot header at {BOOT_MAGIC:#x})")
    setup_sects = bzimage[SETUP_SECTS] or 4
    offset = int.from_bytes(bzimage[PAYLOAD:PAYLOAD + 4], "little")
    length = int.from_bytes(bzimage[PAYLOAD + 4:PAYLOAD + 8], "little")
    start = (setup_sects + 1) * SECTOR + offset
    payload = bzimage[start:start + length]
    if len(payload) != length or not payload.startswith(XZ_MAGIC):
        raise ImageError(f"{name}: its payload at {start:#x} ({length} bytes) is not "
                         "xz-compressed (the -686 packages' kernels are)")
    try:  # the stream ends before the payload does: the kernel appends its size
        vmlinux = lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(payload)
    except lzma.LZMAError as exc:
        raise ImageError(f"{name}: its xz payload does not decompress: {exc}") from None
    if not vmlinux.startswith(ELF_MAGIC):
        raise ImageError(f"{name}: its payload decompresses to something other than ELF")
    return vmlinux


def newest_package() -> str:
    """The newest linux-image-*-686-unsigned package apt knows (i386 added, updated)."""
    listed = _run("apt-cache search", ["apt-cache", "search", "--names-only",
                                       r"^linux-image-[0-9.]+-[0-9]+-686-unsigned$"])
    names = [line.split(" ", 1)[0] for line in listed.splitlines()]
    versions = {tuple(map(int, m.groups())): m.string
                for m in map(PACKAGE.match, names) if m}
    if not versions:
        raise FetchError("apt knows no linux-image-*-686-unsigned package: run `dpkg "
                         "--add-architecture i386 && apt-get update` first")
    return versions[max(versions)]


def fetch(out: Path, deb: Path | None) -> Path:
    """Write OUT: the vmlinux of DEB, or of the newest package, downloaded."""
    with tempfile.TemporaryDirectory(prefix="pvtool-linux-") as name:
        work = Path(name)
        if deb is None:
            package = newest_package()
            _run("apt-get download", ["apt-get", "download", f"{package}:i386"], cwd=work)
            deb = next(work.glob("*.deb"))
        if not deb.is_file():
            raise InputMissingError(f"{deb}: no such package file")
        _run("dpkg-deb -x", ["dpkg-deb", "-x", str(deb), str(work / "root")])
        images = sorted((work / "root" / "boot").glob("vmlinuz-*"))
        if not images:
            raise FetchError(f"{deb}: holds no boot/vmlinuz-*")
        vmlinux = vmlinux_of_bzimage(images[0].read_bytes(), images[0].name)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out.parent}: cannot create: {exc.strerror or exc}") from None
    write_atomically(out, vmlinux)
    return out


def _run(step: str, argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise FetchError(f"{step}: {argv[0]} is not installed (a Debian system's)") from None
    if done.returncode:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [""]
        raise FetchError(f"{step} failed (status {done.returncode}): {last[0]}")
    return done.stdout


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 3) or (len(argv) == 3 and argv[1] != "--deb"):
        print("usage: python -m pvtool.bench.linux_image OUT [--deb FILE]", file=sys.stderr)
        return 64
    try:
        out = fetch(Path(argv[0]), Path(argv[2]) if len(argv) == 3 else None)
    except PvtoolError as exc:
        print(f"linux_image: {exc.message}", file=sys.stderr)
        return exc.exit_status
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
