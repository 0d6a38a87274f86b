"""constraints.txt pins every package pvtool and its dev extras install, what they pull
in included, and the environment the suite runs in is the pinned one."""

import re
import tomllib
from importlib import metadata

from tests.oracles import REPO_ROOT

PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = ("dev", "plot")  # what the Makefile installs into .venv
DECLARED = PROJECT["dependencies"] + [requirement for extra in EXTRAS
                                       for requirement in PROJECT["optional-dependencies"][extra]]
# A requirement's name: what comes before its version, extras or marker (PEP 508).
NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalized(name: str) -> str:
    """The name as pip compares names (PEP 503): case and runs of -_. do not count."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalized(NAME.match(requirement).group(1))


def pins() -> dict[str, str]:
    lines = (REPO_ROOT / "constraints.txt").read_text().splitlines()
    pairs = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {normalized(name): version for name, version in pairs}


def pulled_in(names: set[str]) -> set[str]:
    """NAMES and every installed distribution they require, transitively. A requirement
    behind an extra is not followed; one behind another marker (a platform, a Python
    version) is followed where pip installed it."""
    found, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for requirement in metadata.requires(name) or []:
            wanted = requirement_name(requirement)
            if "extra ==" not in requirement and _installed(wanted):
                todo.append(wanted)
    return found


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_every_declared_dependency_is_pinned_exactly():
    assert DECLARED
    assert sorted({requirement_name(r) for r in DECLARED} - pins().keys()) == []


def test_what_the_dependencies_pull_in_is_pinned_too():
    declared = {requirement_name(r) for r in DECLARED}
    assert sorted(pulled_in(declared) - pins().keys()) == []


def test_the_installed_versions_are_the_pinned_ones():
    installed = {name: metadata.version(name) for name in pins()}
    assert installed == pins()
