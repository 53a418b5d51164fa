"""The package's shape: stages import only stages below them, and no module imports itself back (docs/architecture.md)."""
from __future__ import annotations

import ast
from pathlib import Path

import radsight

PACKAGE = Path(radsight.__file__).parent
# Low to high: a module may import its own stage and those before it. docs/architecture.md draws the same list.
STAGES = ["core", "io", "inputs", "data", "models", "runtime", "explain", "heads", "pipeline", "results", "batch",
          "evaluate", "train", "convert", "service", "cli", "face"]
CORE = {"radsight.core", "radsight.version", "radsight.concurrency"}


def stage_of(module: str) -> str | None:
    if module in CORE:
        return "core"
    if module in ("radsight", "radsight.__main__"):
        return "face"
    part = module.split(".")[1] if module.count(".") else ""
    return part if part in STAGES else None


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every radsight module ``path`` imports, at module level or inside a function (lazy imports count)."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "radsight"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "radsight":
                continue
            for alias in node.names:  # ``from radsight.x import y``: y is a module when a file says so
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _is_module(candidate) else base)
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_stage():
    assert [m for m in graph() if stage_of(m) is None] == []


def test_no_stage_imports_a_higher_one():
    upward = [f"{m} ({stage_of(m)}) -> {t} ({stage_of(t)})" for m, targets in graph().items() for t in targets
              if STAGES.index(stage_of(t)) > STAGES.index(stage_of(m))]
    assert upward == []


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in edges:
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_few_modules_at_the_top():
    assert len(list(PACKAGE.glob("*.py"))) <= 12
