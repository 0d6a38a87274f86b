"""A campaign's figures added up across pytest-xdist workers (tests/campaign.py): each
worker records its own, the controller adds them to its own, and a new campaign
starts from nothing."""

import pytest

from tests import campaign
from tests.campaign import COUNTERS, Figures
from tests.test_fuzz_images import MAX_EXAMPLES, SHARDS, share


@pytest.fixture
def figures_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(campaign, "FIGURES_DIR", tmp_path)
    monkeypatch.setattr(campaign, "PROGRESS_LOG", tmp_path / "progress.log")
    for name in COUNTERS:
        monkeypatch.setattr(Figures, name, 0)
    return tmp_path


def as_worker(monkeypatch, worker: str, **counts: int) -> None:
    for name, value in counts.items():
        monkeypatch.setattr(Figures, name, value)
    campaign.record(worker)


def test_the_controller_adds_every_workers_figures_to_its_own(figures_dir, monkeypatch):
    as_worker(monkeypatch, "gw0", hypercalls=0, images=4_999, commands=9_998,
              invariants=9_998)
    as_worker(monkeypatch, "gw1", hypercalls=1_000_000, images=5_001, commands=10_002,
              invariants=10_003)
    for name, value in {"hypercalls": 1, "images": 0, "commands": 0, "invariants": 1}.items():
        monkeypatch.setattr(Figures, name, value)  # the controller's own
    assert campaign.total() == {"hypercalls": 1_000_001, "images": 10_000, "commands": 20_000,
                                "invariants": 20_002}
    assert campaign.summary(campaign.total(), started=0).startswith(
        "fuzzing campaign: 1,000,001 hypercalls, 10,000 mutated images (20,000 commands), "
        "20,002 invariant checks passed, in ")


def test_a_new_campaign_forgets_the_last_ones_figures(figures_dir, monkeypatch):
    as_worker(monkeypatch, "gw0", images=7, commands=14, invariants=14)
    (figures_dir / "progress.log").write_text("old\n")
    campaign.start()
    assert campaign.total() == {"hypercalls": 0, "images": 7, "commands": 14,
                                "invariants": 14}  # this process's, no worker's
    assert (figures_dir / "progress.log").read_text() == ""


def test_the_shards_share_out_the_images_exactly():
    assert sum(share(shard) for shard in range(SHARDS)) == MAX_EXAMPLES
    assert max(map(share, range(SHARDS))) - min(map(share, range(SHARDS))) <= 1
