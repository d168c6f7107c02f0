"""The layering rules of docs/architecture.md, checked on the imports each module states (ast, nothing imported)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "qgesco"

#: Which of our packages each package may import (docs/architecture.md). Data flows sender -> channel ->
#: receiver -> metrics; a package missing here fails the test until its row is written.
ALLOWED = {
    "fileio": set(),
    "distributed": set(),
    "diffusion": set(),
    "validate": {"fileio"},
    "channel": {"validate", "fileio"},
    "models": {"fileio"},
    "data": {"fileio"},
    "metrics": {"fileio"},
    "viz": {"channel", "fileio"},
    "runcore": {"metrics"},
    "receiver": {"diffusion", "validate"},
    "train": {"models", "diffusion", "channel", "data", "distributed", "fileio", "validate", "viz"},
    "quant": {"models", "diffusion", "channel", "data", "fileio", "validate"},
    "runtime": {"quant", "models", "diffusion", "channel", "receiver", "fileio"},
    "api": {"models", "runtime", "fileio", "validate"},
    "evaluate": {
        "runcore",
        "api",
        "models",
        "diffusion",
        "channel",
        "data",
        "distributed",
        "quant",
        "runtime",
        "receiver",
        "metrics",
        "fileio",
        "validate",
        "viz",
    },
    "demo": {
        "api",
        "models",
        "diffusion",
        "channel",
        "data",
        "quant",
        "runtime",
        "receiver",
        "metrics",
        "fileio",
        "viz",
    },
    "semcom": {
        "channel",
        "data",
        "diffusion",
        "metrics",
        "receiver",
        "evaluate",
        "runcore",
        "fileio",
        "validate",
        "viz",
    },
    "cli": {"*"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """Our modules ``name`` imports anywhere in its source (function-level imports too); ``from pkg import
    submodule`` counts as the submodule, as importing a submodule's parent package is implied."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "qgesco"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "qgesco":
                continue
            submodules = {f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in MODULES}
            found |= submodules
            if len(submodules) < len(node.names):
                found.add(source)
    return found - {name}


GRAPH = {name: imports_of(name) for name in MODULES}


def layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_package_has_a_rule():
    assert {layer(n) for n in MODULES} - {None} <= set(ALLOWED), "add the new package's row to ALLOWED and the docs"


def test_imports_follow_the_layering_rules():
    broken = []
    for name, imported in GRAPH.items():
        own = layer(name)
        if own is None or "*" in ALLOWED.get(own, ()):
            continue
        for target in imported:
            other = layer(target)
            if other not in (own, None) and other not in ALLOWED[own]:
                broken.append(f"{name} imports {target}")
            if other is None and target != "qgesco":
                broken.append(f"{name} imports {target}")
    assert not broken, "\n".join(sorted(broken))


def test_metrics_and_diffusion_stay_independent():
    """Spelled out because the docs single them out: the metrics read only files, diffusion never sees the network."""
    for name, imported in GRAPH.items():
        if layer(name) in ("metrics", "diffusion", "channel"):
            assert not {layer(t) for t in imported} & {"models", "quant", "runtime", "train", "evaluate"}, name


def test_no_import_cycles():
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(GRAPH.get(name, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(stack[stack.index(target) :] + [target]))
            elif target in GRAPH and target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_relative_and_function_level_imports():
    assert "qgesco.diffusion.gaussian" in GRAPH["qgesco.diffusion.samplers"]
    assert "qgesco.evaluate.report" in GRAPH["qgesco.evaluate.runner"]  # from . import report
    assert "qgesco.demo" in GRAPH["qgesco.cli.demo"]  # imported inside run()
