"""Fixtures of the benchmark tests: `pvtool bench` run once on a guest, for the tests
that read its JSON and its table."""

import io
import json

import pytest
from rich.console import Console

from pvtool.bench.progress import BenchProgress
from tests.cli import pvtool


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory, guests):
    """bench_report(guest, disk_sectors=0) -> (the JSON, stdout, stderr) of `pvtool
    bench` on build/guests/GUEST, one repetition, stderr not a terminal, the disk rows
    moving DISK_SECTORS (0: none)."""

    def _bench(guest: str, disk_sectors: int = 0) -> tuple[dict, str, str]:
        out = tmp_path_factory.mktemp("bench") / "out.json"
        result = pvtool("bench", guests(guest), "--repeat", "1", "--json", out,
                        "--disk-sectors", disk_sectors)
        assert result.status == 0, result.output
        return json.loads(out.read_text()), result.stdout, result.stderr

    return _bench


@pytest.fixture
def progress() -> BenchProgress:
    """The progress of a bench part run alone: plain lines, into a buffer."""
    return BenchProgress(Console(file=io.StringIO()), total=1)
