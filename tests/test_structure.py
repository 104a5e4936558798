"""The layout rules of CONTRIBUTING.md, checked on the source: no import circle, no task module importing another,
no source file over 600 lines, rendering below explain, inference and serve."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for p in (SRC / "breastdx").rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> breastdx modules it imports, at module or function level (a package's own __init__ excluded)."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for m, p in modules.items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in modules:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != m and not m.startswith(t + "."):
                    edges[m].add(t)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def edges() -> dict[str, set[str]]:
    return _imports(_modules())


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles(edges):
    assert _cycles(edges) == []


def test_no_task_module_imports_another(edges):
    from breastdx.tasks import TASKS

    task_modules = {m for m in edges if m.startswith("breastdx.tasks.")}  # shared code lives below, in pipeline/
    assert {m.rsplit(".", 1)[1].replace("_", "-") for m in task_modules} == set(TASKS.names())
    assert {"breastdx.tasks.pcam", "breastdx.tasks.busi_seg", "breastdx.tasks.wdbc"} <= task_modules
    assert {m: sorted(edges[m] & task_modules) for m in task_modules if edges[m] & task_modules} == {}


def test_rendering_sits_below_explain_inference_and_serve(edges):
    above = ("breastdx.explain", "breastdx.inference", "breastdx.serve", "breastdx.tasks")
    assert not [(m, t) for m in edges if m.startswith("breastdx.visualize") for t in edges[m] if t.startswith(above)]


def test_no_source_file_over_600_lines():
    long = {str(p.relative_to(SRC)): n for p in (SRC / "breastdx").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def _text_io_without_encoding(tree: ast.AST) -> list[int]:
    """Lines of ``open(...)`` in a text mode, ``.read_text()`` and ``.write_text()`` calls that name no encoding
    (they would use the locale's, cp1252 on many Windows machines, and fail on a file name in another script)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or any(k.arg == "encoding" for k in node.keywords):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in ("read_text", "write_text"):
            lines.append(node.lineno)
        elif isinstance(f, ast.Name) and f.id == "open":
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                                  None)
            if not (isinstance(mode, ast.Constant) and "b" in str(mode.value)):
                lines.append(node.lineno)
    return lines


def test_text_files_are_read_and_written_as_utf8():
    found = {str(p.relative_to(SRC)): lines for p in sorted((SRC / "breastdx").rglob("*.py"))
             if (lines := _text_io_without_encoding(ast.parse(p.read_text(encoding="utf-8"))))}
    assert found == {}


def test_the_encoding_check_finds_what_it_looks_for():
    tree = ast.parse("open(p)\nopen(p, 'w', newline='')\nopen(p, 'rb')\nopen(p, mode='wb')\np.read_text()\n"
                     "p.write_text(s, encoding='utf-8')\nopen(p, encoding='utf-8')\n")
    assert _text_io_without_encoding(tree) == [1, 2, 5]


def test_every_name_a_benchmark_imports_exists():
    """benchmarks/ import from breastdx and from each other, often inside functions that only a long run reaches:
    a renamed function would break them unseen. Every ``from X import name`` there must resolve."""
    import importlib
    import importlib.util

    bench = SRC.parent / "benchmarks"
    local = {p.stem for p in bench.glob("*.py")}

    def top_level_names(module: str) -> set[str]:
        names: set[str] = set()
        for n in ast.parse((bench / f"{module}.py").read_text(encoding="utf-8")).body:
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
                names.add(n.name)
            elif isinstance(n, ast.Assign):
                names |= {t.id for t in n.targets if isinstance(t, ast.Name)}
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in n.names}
        return names

    missing = []
    for p in sorted(bench.glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
                continue
            if node.module.split(".")[0] == "breastdx":
                module = importlib.import_module(node.module)
                missing += [f"{p.name}:{node.lineno} {node.module}.{a.name}" for a in node.names
                            if not hasattr(module, a.name)
                            and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
            elif node.module in local:
                names = top_level_names(node.module)
                missing += [f"{p.name}:{node.lineno} {node.module}.{a.name}" for a in node.names if a.name not in names]
    assert missing == []
