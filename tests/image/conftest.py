"""Fixtures for the image tests: real kernels built in each test's tmp_path."""

from pathlib import Path

import pytest

from tests.image.elfs import HIGHER_HALF_LD, build_kernel


@pytest.fixture
def kernel(tmp_path: Path) -> Path:
    """The default Multiboot kernel, linked at 1 MiB (tests/image/elfs.py)."""
    return build_kernel(tmp_path)


@pytest.fixture
def higher_half_kernel(tmp_path: Path) -> Path:
    """The same kernel linked at 0xC0100000 and loaded at 1 MiB."""
    return build_kernel(tmp_path, script=HIGHER_HALF_LD, name="higher")
