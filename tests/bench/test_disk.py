"""The disk rows' own logic, without a guest: what the workload leaves on the disk,
and blkfront's verdict against the ATA paths."""

import struct

import pytest

from pvtool.bench import disk

SECTOR = 512


def pattern_disk(sectors: int, first: int = 2, spare: int = 3) -> bytearray:
    """A disk as diskbench.c leaves it: word i of sector s holds s * 128 + i."""
    image = bytearray(SECTOR * (first + sectors + spare))
    for lba in range(first, first + sectors):
        image[lba * SECTOR:(lba + 1) * SECTOR] = struct.pack(
            "<128I", *range(lba * 128, lba * 128 + 128))
    return image


def test_the_workloads_pattern_is_recognised_and_a_word_off_is_not():
    image = pattern_disk(5)
    assert disk.written(bytes(image), 5)
    assert not disk.written(bytes(image), 6)  # sector 7 was never written
    image[3 * SECTOR + 100] ^= 1
    assert not disk.written(bytes(image), 5)
    assert not disk.written(bytes(SECTOR * 16), 1)  # a fresh disk holds zeros


def row(driver: str, exits: float, req: int = 1, passed: bool = True) -> dict:
    return {"ok": True, "passed": passed, "disk_written": True, "driver": driver,
            "exits_per_sector": exits, "sectors_per_request": req}


@pytest.mark.parametrize("rows, fewer, met", [
    ([row("ATA", 140.0), row("ATA", 137.5), row("blkfront", 5.5), row("blkfront", 0.7, 8)],
     {"1": 25.0, "8": 196.4}, True),
    ([row("ATA", 137.5), row("blkfront", 20.0), row("blkfront", 2.0, 8)],
     {"1": 6.9, "8": 68.8}, False),
    ([row("ATA", 137.5), row("blkfront", 0.0)], {"1": None}, True),
    ([row("ATA", 0.0), row("blkfront", 0.0)], {}, False),
    ([row("ATA", 137.5), row("blkfront", 1.0, passed=False)], {}, False),
    ([row("ATA", 137.5, passed=False), row("blkfront", 1.0)], {}, False),
])
def test_blkfront_is_judged_against_the_fewest_ata_exits_of_ways_that_passed(rows, fewer,
                                                                             met):
    verdict = disk.blkfront_verdict(rows)
    assert verdict["times_fewer_exits"] == fewer
    assert verdict["met"] is met
    assert verdict["target"] == disk.TARGET_FEWER_EXITS == 10
