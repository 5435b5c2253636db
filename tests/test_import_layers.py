"""Imports point down: every import of the package, top-level or inside a function, against the layer order
written once in docs/ARCHITECTURE.md, and no import cycle between modules.

A unit is a top-level module or sub-package of hybridmem (`geometry`, `models`, `cli`; `hybridmem` is the
package's own __init__). The order lists units top first, one layer a line; a unit may import its own
modules and those of units on lower lines, never a unit on its own line (a sibling) or above.

    HYBRIDMEM_SRC=/tmp/old/src pytest tests/test_import_layers.py      # check another checkout's package
"""

from __future__ import annotations

import ast
import os
import re
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = Path(os.environ.get("HYBRIDMEM_SRC", REPO / "src"))
PACKAGE = SOURCE / "hybridmem"
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"


def layer_order() -> list[list[str]]:
    """The units of each layer, top first: the ```layers block of docs/ARCHITECTURE.md."""
    text = ARCHITECTURE.read_text()
    match = re.search(r"```layers\n(.*?)```", text, re.DOTALL)
    assert match, f"{ARCHITECTURE}: no ```layers block"
    return [line.split() for line in match.group(1).splitlines() if line.strip()]


def module_name(path: Path, source: Path = SOURCE) -> str:
    parts = path.relative_to(source).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported hybridmem module, line) for every import in the file, at any depth."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..a import b
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                # `from hybridmem import jsonio` imports the module hybridmem.jsonio; `from a import name` a
                submodule = f"{origin}.{alias.name}"
                found.append((submodule if submodule in known else origin, node.lineno))
    return [(name, line) for name, line in found if name == "hybridmem" or name.startswith("hybridmem.")]


def import_graph() -> dict[str, list[tuple[str, int]]]:
    known = modules()
    return {module: imports(module, path, known) for module, path in known.items()}


def upward_imports(graph, order) -> list[str]:
    rank = {unit: depth for depth, line in enumerate(order) for unit in line}
    problems = []
    for module, targets in graph.items():
        for target, line in targets:
            source_unit, target_unit = unit_of(module), unit_of(target)
            if source_unit == target_unit:
                continue
            if rank[target_unit] < rank[source_unit]:
                problems.append(f"{module}:{line} imports {target}: {target_unit} is above {source_unit}")
            elif rank[target_unit] == rank[source_unit]:
                problems.append(
                    f"{module}:{line} imports {target}: {target_unit} and {source_unit} are siblings"
                )
    return problems


def cycles(graph) -> list[str]:
    """One shortest cycle through each strongly connected group of modules (Tarjan's algorithm)."""
    edges = {module: sorted({name for name, _ in found if name in graph}) for module, found in graph.items()}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group, member = set(), None
            while member != node:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
            if len(group) > 1 or node in edges[node]:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [shortest_cycle(min(group), edges, group) for group in groups]


def shortest_cycle(start: str, edges: dict[str, list[str]], group: set[str]) -> str:
    """start -> ... -> start inside `group`, found breadth first."""
    previous, queue = {}, deque([start])
    while queue:
        node = queue.popleft()
        for target in edges[node]:
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return " -> ".join([*reversed(path), start])
            if target in group and target not in previous:
                previous[target] = node
                queue.append(target)
    raise AssertionError(f"no cycle through {start}")


def test_every_unit_has_a_layer():
    order = layer_order()
    listed = [unit for line in order for unit in line]
    units = {unit_of(module) for module in modules()}
    assert len(listed) == len(set(listed)), f"a unit is listed twice in {ARCHITECTURE}: {listed}"
    assert not units - set(listed), f"units missing from the layers of {ARCHITECTURE}: {units - set(listed)}"
    assert not set(listed) - units, f"layers name units that do not exist: {set(listed) - units}"


def test_imports_point_down():
    problems = upward_imports(import_graph(), layer_order())
    assert not problems, "imports that do not point down:\n  " + "\n  ".join(problems)


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles:\n  " + "\n  ".join(found)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The walk finds what it must flag: an import inside a function, and a relative one, both upward."""
    package = tmp_path / "hybridmem"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("")
    (package / "low" / "a.py").write_text("def f():\n    from hybridmem.high import b\n")
    (package / "high.py").write_text("from .low import a\n")
    known = {module_name(path, tmp_path): path for path in package.rglob("*.py")}
    graph = {module: imports(module, path, known) for module, path in known.items()}
    assert upward_imports(graph, [["high"], ["low"], ["hybridmem"]]) == [
        "hybridmem.low.a:2 imports hybridmem.high: high is above low"
    ]
    assert cycles(graph) == ["hybridmem.high -> hybridmem.low.a -> hybridmem.high"]


def table_imports() -> dict[str, set[str] | None]:
    """The "imports (besides errors)" column of docs/ARCHITECTURE.md's unit table: unit -> the units it
    names (`recipe.export` names recipe; words in brackets are comments); None for "every command"."""
    rows = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        unit, listed = cells[0].strip("`"), re.sub(r"\([^)]*\)", "", cells[2]).strip()
        if listed == "every command":
            rows[unit] = None
            continue
        names = [name.strip() for name in listed.split(",")] if listed != "-" else []
        rows[unit] = {name.split(".")[0] for name in names if name}
    return rows


def unit_imports(graph) -> dict[str, set[str]]:
    """unit -> the other units its modules import (errors and the package's own __init__ left out)."""
    found: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = unit_of(module)
        found.setdefault(source, set())
        for target, _ in targets:
            unit = unit_of(target)
            if unit not in (source, "errors", "hybridmem"):
                found[source].add(unit)
    return found


def test_the_architecture_table_lists_what_each_unit_imports():
    table, actual = table_imports(), unit_imports(import_graph())
    actual.pop("hybridmem", None)  # the package's __init__ (version, docstring) has no row
    assert set(table) == set(actual), f"units in the table {sorted(table)} != in the code {sorted(actual)}"
    problems = []
    for unit, listed in sorted(table.items()):
        if listed is None:  # the CLI: every command module
            continue
        if listed != actual[unit]:
            missing, extra = sorted(actual[unit] - listed), sorted(listed - actual[unit])
            problems.append(f"{unit}: the table misses {missing}, names {extra} it does not import")
    assert not problems, f"{ARCHITECTURE} unit table against the code:\n  " + "\n  ".join(problems)
