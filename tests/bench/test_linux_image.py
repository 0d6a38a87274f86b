"""The vmlinux a bzImage carries: a bzImage laid out as the boot protocol says
(Documentation/arch/x86/boot.rst), its payload compressed by the xz tool with the
x86 BCJ filter as Linux's build compresses it; and one-line refusals of what is not."""

import subprocess

import pytest

from pvtool.bench.linux_image import vmlinux_of_bzimage
from pvtool.errors import ImageError
from tests.oracles import guest_path, require_tool

SETUP_SECTS = 2  # three sectors before the protected-mode part
PAYLOAD_OFFSET = 0x40  # a decompressor's worth of bytes before the payload


def xz(data: bytes) -> bytes:
    """What Linux's scripts/xz_wrap.sh makes: xz --check=crc32 --x86 --lzma2."""
    done = subprocess.run([require_tool("xz"), "--format=xz", "--check=crc32", "--x86",
                           "--lzma2=dict=1MiB", "--stdout"], input=data,
                          capture_output=True, check=True)
    return done.stdout


def bzimage(payload: bytes) -> bytes:
    image = bytearray((SETUP_SECTS + 1) * 512 + PAYLOAD_OFFSET)
    image[0x1F1] = SETUP_SECTS
    image[0x202:0x206] = b"HdrS"
    image[0x248:0x24C] = PAYLOAD_OFFSET.to_bytes(4, "little")
    image[0x24C:0x250] = len(payload).to_bytes(4, "little")
    return bytes(image) + payload + b"\0" * 64  # the decompressor's own tail


def test_the_payload_decompresses_to_the_elf_image():
    elf = guest_path("hello").read_bytes()
    # Linux appends the uncompressed size after the xz stream (arch/x86/boot/compressed)
    payload = xz(elf) + len(elf).to_bytes(4, "little")
    assert vmlinux_of_bzimage(bzimage(payload)) == elf


@pytest.mark.parametrize("image, reason", [
    (b"MZ" + bytes(0x300), "not a bzImage"),
    (bzimage(b"\x1f\x8b" + bytes(30)), "not xz-compressed"),
])
def test_what_is_not_an_xz_bzimage_is_refused_in_one_line(image, reason):
    with pytest.raises(ImageError, match=reason) as caught:
        vmlinux_of_bzimage(image, "vmlinuz")
    assert caught.value.message.startswith("vmlinuz: ") and "\n" not in caught.value.message


def test_a_payload_that_is_not_elf_is_refused():
    with pytest.raises(ImageError, match="other than ELF"):
        vmlinux_of_bzimage(bzimage(xz(b"not a kernel" * 100)), "vmlinuz")
