"""A raw disk image file seen as 512-byte sectors.

Writes go through to the file at once, with one pwrite each (DESIGN.md, "Errors and
safety": disk images are written through and flushed at shutdown and at a crash), so
that a crash of pvtool loses nothing the guest had written. In snapshot mode the file
is opened read-only and written sectors live in memory for the rest of the run.
"""

import errno
import os
import stat
from pathlib import Path

from pvtool.errors import ImageError, InputMissingError

SECTOR_SIZE = 512


class DiskImage:
    """Sector access to an open image file; build one with `DiskImage.open`."""

    def __init__(self, path: Path, fd: int, size: int, *, snapshot: bool):
        self.path = path
        self.snapshot = snapshot
        self.sectors = size // SECTOR_SIZE
        self._fd: int | None = fd
        self._overlay: dict[int, bytes] = {}  # snapshot mode: sector -> its new bytes

    @classmethod
    def open(cls, path: Path, *, snapshot: bool) -> "DiskImage":
        """Open PATH read-write, or read-only when SNAPSHOT. A file that cannot be
        opened so is an InputMissingError; a size that is not whole sectors an
        ImageError."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY if snapshot else os.O_RDWR)
        except OSError as err:
            raise InputMissingError(f"{path}: {_reason(err, snapshot)}") from err
        try:
            size = _image_size(path, fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, size, snapshot=snapshot)

    # -- sectors -----------------------------------------------------------------
    def read(self, lba: int, count: int) -> bytes:
        fd = self._check(lba, count)
        data = bytearray(os.pread(fd, count * SECTOR_SIZE, lba * SECTOR_SIZE))
        if len(data) != count * SECTOR_SIZE:
            raise OSError(f"{self.path}: short read at sector {lba}")
        for sector in range(lba, lba + count):
            if sector in self._overlay:
                start = (sector - lba) * SECTOR_SIZE
                data[start:start + SECTOR_SIZE] = self._overlay[sector]
        return bytes(data)

    def write(self, lba: int, data: bytes) -> None:
        if len(data) % SECTOR_SIZE:
            raise ValueError(f"{len(data)} bytes is not a whole number of sectors")
        count = len(data) // SECTOR_SIZE
        fd = self._check(lba, count)
        if self.snapshot:
            for index in range(count):
                self._overlay[lba + index] = bytes(
                    data[index * SECTOR_SIZE:(index + 1) * SECTOR_SIZE])
            return
        written = os.pwrite(fd, data, lba * SECTOR_SIZE)
        if written != len(data):
            raise OSError(f"{self.path}: short write at sector {lba}")

    def _check(self, lba: int, count: int) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        if count < 0 or lba < 0 or lba + count > self.sectors:
            raise ValueError(
                f"sectors {lba}-{lba + count - 1} are outside {self.path}"
                f" ({self.sectors} sectors)")
        return self._fd

    # -- lifetime ----------------------------------------------------------------
    def flush(self) -> None:
        """Make every write durable (fsync); nothing to do for a snapshot."""
        if self._fd is not None and not self.snapshot:
            os.fsync(self._fd)

    def close(self) -> None:
        """Flush and close; closing twice is harmless."""
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def __enter__(self) -> "DiskImage":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _image_size(path: Path, fd: int) -> int:
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        raise InputMissingError(f"{path}: is a directory, not a disk image")
    size = os.lseek(fd, 0, os.SEEK_END)  # st_size is 0 for a block device
    if size % SECTOR_SIZE:
        raise ImageError(
            f"{path}: size {size} bytes is not a multiple of {SECTOR_SIZE}-byte sectors")
    return size


def _reason(err: OSError, snapshot: bool) -> str:
    reason = err.strerror or str(err)
    if not snapshot and err.errno in (errno.EACCES, errno.EROFS):
        return f"{reason} (opened for writing; a snapshot opens it read-only)"
    return reason
