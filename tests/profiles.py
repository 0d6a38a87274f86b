"""How hard the fuzz and property tests try: Hypothesis profiles.

"ci" is full strength: every test runs the examples its module states (hypothesis's
own default of 100 for a test that states none). "dev" runs a tenth of them, so that
`make test` stays quick on a developer's machine. tests/conftest.py loads "ci" where
the CI environment variable is set (.ci/run's environment and every CI service set
it) and "dev" elsewhere; `pytest --hypothesis-profile=ci` (or `CI=true make test`)
fuzzes at full strength anywhere.

"campaign" is `make fuzz`'s long run outside CI: a fuzz test runs the count it states
for a campaign (at least a million hypercalls, ten thousand mutated images), and
hypothesis keeps its example database in build/hypothesis (ignored by git), so a
failure found once is tried first in the next campaign.

A test states its full strength through `examples(N)`, which scales N by the loaded
profile; a test with hypothesis's default count needs nothing.
"""

from pathlib import Path

from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

from tests.oracles import in_ci

FULL_EXAMPLES = 100  # the "ci" profile's max_examples, hypothesis's default
DEV_EXAMPLES = 10
CAMPAIGN = "campaign"
CAMPAIGN_DATABASE = Path(__file__).resolve().parents[1] / "build" / "hypothesis"

# No deadline: the examples' time depends on the machine's load (xdist runs two
# workers on CI's two cores), and a slow example is not a wrong one.
settings.register_profile("ci", max_examples=FULL_EXAMPLES, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=DEV_EXAMPLES, deadline=None)
settings.register_profile(CAMPAIGN, max_examples=10 * FULL_EXAMPLES, deadline=None,
                          print_blob=True,
                          database=DirectoryBasedExampleDatabase(str(CAMPAIGN_DATABASE)))


def load_default_profile() -> None:
    settings.load_profile("ci" if in_ci() else "dev")


def in_campaign() -> bool:
    return settings.get_current_profile_name() == CAMPAIGN


def examples(full: int, campaign: int | None = None) -> int:
    """FULL under the "ci" profile, the same share of it under another (at least one);
    CAMPAIGN, where the test states one, under `make fuzz`'s profile."""
    if campaign is not None and in_campaign():
        return campaign
    return max(1, full * settings().max_examples // FULL_EXAMPLES)
