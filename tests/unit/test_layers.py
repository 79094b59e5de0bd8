"""The shape of the code, checked: no import cycle between modules or packages' layers,
verbs only in `labctl/commands/`, diagnostics on the host-access and facts layers only,
and no module-level state in the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("labctl", "diagnostics")
# What diagnostics may use of labctl: host access, facts and the plain values below them.
LOWER_LAYERS = ("labctl.ssh", "labctl.runner", "labctl.facts", "labctl.errors", "labctl.validate",
                "labctl.spec", "labctl.wait", "labctl.paths")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "remote" in path.relative_to(ROOT).parts:  # scripts that run on the hosts
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every project module `name` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    resolved = set()
    for target in targets:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _in(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_checker_sees_imports_and_cycles() -> None:
    assert "labctl.ssh" in GRAPH["labctl.lab"]  # `from .ssh import ...`
    assert "labctl.lifecycle.up" in GRAPH["labctl.commands.up"]  # `from ..lifecycle import up`
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_modules() -> None:
    assert _cycles(GRAPH) == []


def test_diagnostics_stand_on_host_access_and_facts_only() -> None:
    wrong = {f"{m} -> {t}" for m, targets in GRAPH.items() if _in(m, "diagnostics")
             for t in targets if _in(t, "labctl") and not _in(t, *LOWER_LAYERS)}
    assert wrong == set()


def test_the_lower_layers_import_neither_diagnostics_nor_services() -> None:
    lower = [m for m in GRAPH if _in(m, *LOWER_LAYERS)]
    wrong = {f"{m} -> {t}" for m in lower for t in GRAPH[m] if not _in(t, *LOWER_LAYERS)}
    assert wrong == set()


def test_only_verbs_reach_diagnostics_and_nothing_imports_the_verbs() -> None:
    into_diagnostics = {m for m, targets in GRAPH.items() if _in(m, "labctl")
                        and any(_in(t, "diagnostics") for t in targets)}
    assert into_diagnostics <= {m for m in GRAPH if _in(m, "labctl.commands")}
    into_commands = {m for m, targets in GRAPH.items() if not _in(m, "labctl.commands", "labctl.cli")
                     and any(_in(t, "labctl.commands") for t in targets)}
    assert into_commands == set()


def test_each_verb_is_one_module_under_commands() -> None:
    verbs = {p.stem for p in (ROOT / "labctl" / "commands").glob("*.py")} - {"__init__", "context"}
    assert verbs == {"preflight", "up", "down", "status", "ssh", "exec", "images", "scenario", "diagnose",
                     "capture", "fault", "drill"}
    for verb in verbs:
        assert f"labctl.commands.{verb}" in GRAPH["labctl.commands"]


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _in(m, "labctl.cli", "labctl.commands")))
def test_the_command_line_keeps_no_module_level_state(name: str) -> None:
    """Module-level names in the CLI are constants, typer apps and option types: the lab
    selection travels in typer's context object."""
    for node in ast.parse(MODULES[name].read_text()).body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            assert isinstance(target, ast.Name), f"{name}: {ast.unparse(target)}"
            value = node.value
            if target.id == "app" or (isinstance(value, ast.Subscript) and ast.unparse(value.value) == "Annotated"):
                continue
            assert target.id.isupper(), f"{name}: module-level `{target.id}`"
            assert not isinstance(value, ast.Call), f"{name}: `{target.id}` is made at import time"
