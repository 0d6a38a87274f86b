"""How hard the fuzz and property tests try: Hypothesis profiles.

"ci" is full strength: every test runs the examples its module states (hypothesis's
own default of 100 for a test that states none). "dev" runs a tenth of them, so that
`make test` stays quick on a developer's machine. tests/conftest.py loads "ci" where
the CI environment variable is set (.ci/run's environment and every CI service set
it) and "dev" elsewhere; `pytest --hypothesis-profile=ci` (or `CI=true make test`)
fuzzes at full strength anywhere.

A test states its full strength through `examples(N)`, which scales N by the loaded
profile; a test with hypothesis's default count needs nothing.
"""

from hypothesis import settings

from tests.oracles import in_ci

FULL_EXAMPLES = 100  # the "ci" profile's max_examples, hypothesis's default
DEV_EXAMPLES = 10

# No deadline: the examples' time depends on the machine's load (xdist runs two
# workers on CI's two cores), and a slow example is not a wrong one.
settings.register_profile("ci", max_examples=FULL_EXAMPLES, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=DEV_EXAMPLES, deadline=None)


def load_default_profile() -> None:
    settings.load_profile("ci" if in_ci() else "dev")


def examples(full: int) -> int:
    """FULL under the "ci" profile, the same share of it under another (at least one)."""
    return max(1, full * settings().max_examples // FULL_EXAMPLES)
