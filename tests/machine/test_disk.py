"""Disk images: opening errors, write-through, snapshots, bounds."""

import errno
import os

import pytest

from pvtool.errors import ImageError, InputMissingError
from pvtool.machine.disk import SECTOR_SIZE, DiskImage

SECTORS = 8


def pattern(sector: int) -> bytes:
    return bytes((sector * 7 + i) & 0xFF for i in range(SECTOR_SIZE))


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(b"".join(pattern(s) for s in range(SECTORS)))
    return path


# ---- opening ----------------------------------------------------------------------------

def test_missing_image_is_input_missing_naming_the_path(tmp_path):
    path = tmp_path / "nowhere.img"
    with pytest.raises(InputMissingError) as caught:
        DiskImage.open(path, snapshot=False)
    assert str(path) in caught.value.message
    assert caught.value.exit_status == 66


def test_directory_is_input_missing(tmp_path):
    for snapshot in (False, True):
        with pytest.raises(InputMissingError, match=str(tmp_path)):
            DiskImage.open(tmp_path, snapshot=snapshot)


def refuse_open(monkeypatch, code: int) -> None:
    """os.open failing as it does for a user without the permission (tests run as
    root too, where chmod alone would not do)."""
    def refused(path, flags, *args):
        raise OSError(code, os.strerror(code), str(path))
    monkeypatch.setattr(os, "open", refused)


def test_unreadable_image_is_input_missing(image, monkeypatch):
    refuse_open(monkeypatch, errno.EACCES)
    with pytest.raises(InputMissingError, match=f"{image}: Permission denied"):
        DiskImage.open(image, snapshot=True)


def test_image_not_writable_says_a_snapshot_would_open_it(image, monkeypatch):
    refuse_open(monkeypatch, errno.EROFS)
    with pytest.raises(InputMissingError, match="read-only"):
        DiskImage.open(image, snapshot=False)


def test_read_only_file_opens_as_a_snapshot(image):
    image.chmod(0o444)
    with DiskImage.open(image, snapshot=True) as disk:
        assert disk.read(3, 1) == pattern(3)


def test_size_not_whole_sectors_is_an_image_error_naming_the_size(tmp_path):
    path = tmp_path / "odd.img"
    path.write_bytes(bytes(1000))
    with pytest.raises(ImageError, match="1000") as caught:
        DiskImage.open(path, snapshot=False)
    assert caught.value.exit_status == 65


def test_sectors_is_the_size_in_512_byte_units(image):
    with DiskImage.open(image, snapshot=False) as disk:
        assert disk.sectors == SECTORS


# ---- reading and writing ----------------------------------------------------------------

def test_read_returns_the_file_s_bytes(image):
    with DiskImage.open(image, snapshot=False) as disk:
        assert disk.read(2, 3) == pattern(2) + pattern(3) + pattern(4)


def test_write_reaches_the_file_before_any_flush(image):
    disk = DiskImage.open(image, snapshot=False)
    disk.write(5, b"\xAA" * SECTOR_SIZE)
    contents = image.read_bytes()
    assert contents[5 * SECTOR_SIZE:6 * SECTOR_SIZE] == b"\xAA" * SECTOR_SIZE
    assert contents[4 * SECTOR_SIZE:5 * SECTOR_SIZE] == pattern(4)
    disk.close()


def test_flush_fsyncs_the_file(image, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    disk = DiskImage.open(image, snapshot=False)
    disk.flush()
    assert len(synced) == 1
    disk.close()  # closing flushes too
    assert len(synced) == 2


def test_close_is_idempotent_and_ends_access(image):
    disk = DiskImage.open(image, snapshot=False)
    disk.close()
    disk.close()
    assert disk.closed
    with pytest.raises(ValueError):
        disk.read(0, 1)


def test_snapshot_keeps_writes_in_memory(image):
    before = image.read_bytes()
    mtime = image.stat().st_mtime_ns
    with DiskImage.open(image, snapshot=True) as disk:
        disk.write(1, b"\x55" * (2 * SECTOR_SIZE))
        disk.flush()
        assert disk.read(0, 4) == pattern(0) + b"\x55" * (2 * SECTOR_SIZE) + pattern(3)
    assert image.read_bytes() == before
    assert image.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("lba, count", [(SECTORS, 1), (SECTORS - 1, 2), (-1, 1)])
def test_out_of_range_access_is_a_value_error(image, lba, count):
    with DiskImage.open(image, snapshot=False) as disk:
        with pytest.raises(ValueError):
            disk.read(lba, count)
        with pytest.raises(ValueError):
            disk.write(lba, bytes(count * SECTOR_SIZE))


def test_partial_sector_write_is_refused(image):
    with DiskImage.open(image, snapshot=False) as disk, pytest.raises(ValueError):
        disk.write(0, b"short")
