import pytest

from tests.guests_asm.build import GuestBuilder


@pytest.fixture(scope="session")
def guest_builder(tmp_path_factory) -> GuestBuilder:
    return GuestBuilder(tmp_path_factory.mktemp("machine-guests"))


@pytest.fixture(scope="session")
def build(guest_builder):
    """build(scenario_source) -> Guest: runtime.s + the scenario, linked at 1 MiB."""
    return guest_builder.build


@pytest.fixture(scope="session")
def flat(guest_builder):
    """flat(source, address) -> (raw code bytes, symbols): no runtime, no ELF."""
    return guest_builder.flat


@pytest.fixture(scope="session")
def build64(guest_builder):
    """build64(scenario_source) -> Guest: runtime64.s + the scenario, an ELF64 kernel."""
    return guest_builder.build64
