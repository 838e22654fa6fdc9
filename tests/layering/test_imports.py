"""The import graph of `megamed/` and `kernels/` (installed as `megamed.kernels`), read with
`ast` from the source (every import statement, including those inside functions, since a
deferred import only hides a cycle): no cycles, and the layering of DESIGN.md holds."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"megamed": ROOT / "megamed", "megamed.kernels": ROOT / "kernels"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package] + parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ours that `name` imports. `from a import b` names module a.b when that is
    a module, else a itself."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]):
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_graph_sees_deferred_and_relative_imports():
    graph = import_graph()
    assert "megamed.kernels.attention" in graph["megamed.kernels.backend"]  # inside a function
    assert "megamed.kernels.tuning" in graph["megamed.kernels.attention"]   # relative
    assert "megamed.parallel.collectives" in graph["megamed.parallel.pipeline"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_layering():
    """parallel/ imports nothing above itself (config is below it); model/ never imports
    training/ or data/."""
    below_parallel = ("megamed.parallel", "megamed.config", "megamed.kernels")
    for name, targets in import_graph().items():
        if name.startswith("megamed.parallel"):
            assert all(t.startswith(below_parallel) for t in targets), (name, targets)
        if name.startswith("megamed.model"):
            assert not any(t.startswith(("megamed.training", "megamed.data")) for t in targets), \
                (name, targets)
