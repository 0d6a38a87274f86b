import pytest

from tests.guests_asm.build import GuestBuilder


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    """build(scenario_source) -> Guest, assembled and linked once per session."""
    return GuestBuilder(tmp_path_factory.mktemp("machine-guests")).build
