"""Fixtures for the image tests: real kernels built in each test's tmp_path."""

from pathlib import Path

import pytest

from tests.image.elfs import HIGHER_HALF64_LD, HIGHER_HALF_LD, build_kernel


@pytest.fixture
def kernel(tmp_path: Path) -> Path:
    """The default Multiboot kernel, linked at 1 MiB (tests/image/elfs.py)."""
    return build_kernel(tmp_path)


@pytest.fixture
def higher_half_kernel(tmp_path: Path) -> Path:
    """The same kernel linked at 0xC0100000 and loaded at 1 MiB."""
    return build_kernel(tmp_path, script=HIGHER_HALF_LD, name="higher")


@pytest.fixture
def kernel64(tmp_path: Path) -> Path:
    """The same kernel for x86-64, linked at 1 MiB."""
    return build_kernel(tmp_path, bits=64, name="kernel64")


@pytest.fixture
def higher_half_kernel64(tmp_path: Path) -> Path:
    """The x86-64 kernel linked at 0xFFFFFFFF80100000 (Linux's __START_KERNEL_map plus
    1 MiB) and loaded at 1 MiB."""
    return build_kernel(tmp_path, bits=64, script=HIGHER_HALF64_LD, name="higher64")
