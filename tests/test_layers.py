"""The package layout is the architecture (DESIGN.md, docs/ARCHITECTURE.md): every
import between pvtool's parts points down the layers. Read from the source, so a new
upward import fails here rather than in a review."""

import ast
from pathlib import Path

import pvtool

PACKAGE = Path(pvtool.__file__).parent
# Each part's floor: a part may import its own modules and any part on a lower floor.
FLOORS = {
    "errors": 0, "console": 0, "interrupts": 0, "abi": 0,
    "x86": 1,
    "image": 2,
    "machine": 3,
    "hv": 4,
    "run": 5, "patch": 5,
    "diffstat": 6, "bench": 6,
    "views": 7,
    "cli": 8,
    "__main__": 9,
}


def part_of(module: str) -> str:
    """`pvtool.hv.traps` -> `hv`; `pvtool` itself (its version) is on the ground floor."""
    names = module.split(".")
    return names[1] if len(names) > 1 else "errors"


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "pvtool":
            found += [f"pvtool.{alias.name}" for alias in node.names]  # its modules
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name for name in found if name == "pvtool" or name.startswith("pvtool.")]


def test_every_part_of_pvtool_has_a_floor():
    parts = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
             if path.suffix == ".py" and path.stem != "__init__" or path.is_dir()
             and (path / "__init__.py").exists()}
    assert parts == set(FLOORS)


def test_imports_point_down_the_layers():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        source = part_of(".".join(relative.parts))
        for module in imports(path):
            target = part_of(module)
            if target != source and FLOORS[target] >= FLOORS[source]:
                upward.append(f"{relative}: imports {module}")
    assert upward == []
