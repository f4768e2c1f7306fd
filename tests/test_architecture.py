"""Do the project's imports respect its layers?

Reads every module of `memcourse`, `autograder` and `memcourse_apps` with `ast` (nothing is
imported, so this is fast and works on a half-broken tree) and checks:

- every module sits in a layer of `LAYERS`;
- no module imports a module of a higher layer;
- no two project modules import each other, directly or round a loop;
- the project's own modules are imported at module level, except where a `# lazy: <reason>`
  comment says why one must wait (it pulls in torch or nbgrader where start-up must be fast);
- every import inside a function or class body, of any module (standard library, third-party or
  project), carries such a comment: the standard library and light packages belong at the top,
  and what stays lazy (torch, nbgrader, IPython at a moment that must stay fast, or an import
  whose timing matters) says why;
- the `memcourse` toolkit imports neither `autograder` nor `memcourse_apps`;
- every import of a project module names a module that exists (a move left no stale import).

How imports are read:

- every `import` and `from ... import` statement counts, wherever it is: at module level, in a
  `try:`/`if` block, in a function or a class body; relative imports are resolved;
- `import a.b.c` imports `a.b.c`; `from a.b import c` imports `a.b.c` when that is a module (or
  package) of the tree, otherwise `a.b`; importing a package means importing its `__init__`;
  but when `a.b` is a package whose `__init__` does not bind `c`, the import is of the missing
  module `a.b.c` (so a module moved away is reported even in this form);
- the parent packages Python runs on the way (`a`, `a.b` for `import a.b.c`) are not counted as
  imports: each package `__init__` is in its package's layer, so they can never point upwards;
- a project import inside a function is accepted only with a `# lazy: <reason>` comment on
  its line or the line above (for a module that pulls in torch or nbgrader where start-up must
  stay fast, e.g. `memcourse --help`); it still counts for layers and cycles;
- "module level" means not inside a function or a class body; an import inside an
  `if TYPE_CHECKING:` block is treated as module level wherever that block is; it still counts
  for layers and cycles (a type is a dependency too);
- imports made by name at run time (`importlib.import_module`) are not seen.

`autograder/__init__.py` is placed in the engine layer (rank 1), the lowest layer of the
`autograder` package: Python runs it before any `autograder.engine` module, so it may only
import what the engine may.
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("memcourse", "autograder", "memcourse_apps")

# rank: (layer name, the modules it holds). "x.*" is every module below package x, "x" is just
# module (or package __init__) x. Keep in step with the layer table in CONTRIBUTING.md.
LAYERS: dict[int, tuple[str, tuple[str, ...]]] = {
    0: ("toolkit", ("memcourse", "memcourse.*")),
    1: ("engine", ("autograder", "autograder.engine", "autograder.engine.*")),
    2: ("course", ("autograder.exercises", "autograder.exercises.*", "autograder.course",
                   "autograder.cells")),
    3: ("learner aids", ("autograder.hints", "autograder.widgets")),
    4: ("grading", ("autograder.grading", "autograder.grading.*")),
    5: ("apps", ("memcourse_apps", "memcourse_apps.*")),
}


@dataclass(frozen=True)
class Import:
    """One project module importing another, as written in the importer's source."""

    file: str  # the importer's path relative to the tree root, e.g. "autograder/cells.py"
    line: int
    importer: str  # dotted module name; a package's __init__ is the package's name
    target: str  # dotted name of the imported module (resolved, absolute)
    module_level: bool  # False inside a function or class body (unless under TYPE_CHECKING)
    scope: str  # "" at module level, else e.g. "run_bench()" or "class Foo"
    lazy_reason: str = ""  # the `# lazy: ...` comment on the import or the line above it

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


# ----------------------------------------------------------------------------- reading


def read_modules(root: Path) -> dict[str, Path]:
    """Every module of the three packages under `root`, by dotted name."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            if any(part == "__pycache__" or part.startswith(".") for part in rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@dataclass
class _Tree:
    """The parsed modules of one tree, for resolving the names that imports use."""

    modules: dict[str, Path]
    parsed: dict[str, ast.Module]
    bound: dict[str, set[str] | None]  # per package: the names its __init__ binds

    def is_package(self, module: str) -> bool:
        return self.modules[module].name == "__init__.py"

    def binds(self, package: str, name: str) -> bool:
        """Does the `__init__` of `package` bind `name` (or might it: `*`, `__getattr__`)?"""
        if package not in self.bound:
            self.bound[package] = _bound_names(self.parsed[package])
        names = self.bound[package]
        return names is None or name in names


def _bound_names(tree: ast.Module) -> set[str] | None:
    """The names a module binds outside functions and classes; None when it cannot be told."""
    names: set[str] = set()

    def walk(node: ast.AST) -> bool:
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            return False
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            return node.name != "__getattr__"
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.For | ast.With):
            names.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name)
                         and isinstance(n.ctx, ast.Store))
        return all(walk(child) for child in ast.iter_child_nodes(node)
                   if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case))

    return names if walk(tree) else None


def _resolve(module: str, node: ast.Import | ast.ImportFrom, tree: _Tree) -> list[str]:
    """The dotted names of the modules one import statement of `module` imports.

    `from p import x`, with `p` a package of the tree and `x` neither a submodule nor a name
    its `__init__` binds, resolves to `p.x`: the submodule it must mean, now missing.
    """
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: up from the importer's own package
        package = module.split(".")
        if not tree.is_package(module):
            package = package[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    targets = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if alias.name == "*":
            target = base
        elif sub in tree.modules:
            target = sub
        elif base in tree.modules and tree.is_package(base) and not tree.binds(base, alias.name):
            target = sub
        else:
            target = base
        if target not in targets:  # `from x import a, b`, neither a submodule: one import of x
            targets.append(target)
    return targets


LAZY = re.compile(r"#\s*lazy:\s*(\S.*)$")


def _lazy_reason(lines: list[str], lineno: int) -> str:
    """The reason a `# lazy: <reason>` comment gives on line `lineno`, or on a line of its own
    just above it."""
    above = lines[lineno - 2] if lineno > 1 else ""
    for text in (lines[lineno - 1], above if above.lstrip().startswith("#") else ""):
        found = LAZY.search(text)
        if found:
            return found.group(1).strip()
    return ""


ImportNode = ast.Import | ast.ImportFrom


def _import_statements(parsed: ast.Module) -> Iterator[tuple[ImportNode, str, bool]]:
    """Every import statement of a parsed module, with its scope and whether it is module level.

    Walks statements only (imports are statements, so expressions never hold one): into
    function and class bodies (which leave module level), `if`/`try`/`with`/`for`/`while`/
    `match` blocks (which do not), and `if TYPE_CHECKING:` bodies (module level wherever they
    are). The scope is "" at module level, else e.g. "run_bench()" or "class Foo > go()".
    """

    def walk(node: ast.AST, scopes: tuple[str, ...], type_checking: bool
             ) -> Iterator[tuple[ImportNode, str, bool]]:
        if isinstance(node, ImportNode):
            yield node, " > ".join(scopes), not scopes or type_checking
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            scopes = (*scopes, f"{node.name}()")
        elif isinstance(node, ast.ClassDef):
            scopes = (*scopes, f"class {node.name}")
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                yield from walk(stmt, scopes, True)
            for stmt in node.orelse:
                yield from walk(stmt, scopes, type_checking)
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
                yield from walk(child, scopes, type_checking)

    yield from walk(parsed, (), False)


def _read_module(module: str, file: str, tree: _Tree, lines: list[str]) -> list[Import]:
    """The project imports of one parsed module, each knowing whether it is at module level."""
    found: list[Import] = []
    for node, scope, module_level in _import_statements(tree.parsed[module]):
        for target in _resolve(module, node, tree):
            if target.split(".")[0] in PACKAGES:
                found.append(Import(file, node.lineno, module, target, module_level, scope,
                                    _lazy_reason(lines, node.lineno)))
    return found


@functools.cache
def _parse(text: str, file: str) -> ast.Module:
    """Parse once per distinct source: the self-tests read copies of the same files."""
    return ast.parse(text, filename=file)


def _read_tree(root: Path) -> tuple[_Tree, dict[str, str], dict[str, list[str]]]:
    """The parsed tree under `root`, with each module's file (relative) and source lines."""
    modules = read_modules(root)
    files = {module: path.relative_to(root).as_posix() for module, path in modules.items()}
    texts = {module: path.read_text(encoding="utf-8") for module, path in modules.items()}
    tree = _Tree(modules, {module: _parse(texts[module], file) for module, file in files.items()},
                 {})
    return tree, files, {module: text.splitlines() for module, text in texts.items()}


def read_imports(root: Path) -> list[Import]:
    """Every import of a project module by a project module in the tree under `root`."""
    tree, files, lines = _read_tree(root)
    found: list[Import] = []
    for module, file in files.items():
        found += _read_module(module, file, tree, lines[module])
    return sorted(found, key=lambda i: (i.file, i.line, i.target))


# ----------------------------------------------------------------------------- layers


def rank_of(module: str) -> int | None:
    """The rank of the layer that holds `module`, or None when no layer does."""
    for rank, (_, patterns) in LAYERS.items():
        for pattern in patterns:
            if pattern.endswith(".*"):
                if module.startswith(pattern[:-1]):
                    return rank
            elif module == pattern:
                return rank
    return None


def _layer(rank: int) -> str:
    return f"rank {rank} '{LAYERS[rank][0]}'"


# ----------------------------------------------------------------------------- checks


def unplaced_modules(root: Path) -> list[str]:
    return [f"{path.relative_to(root).as_posix()} (module {module}) is in no layer: place it "
            "in LAYERS in tests/test_architecture.py and in the layer table of CONTRIBUTING.md."
            for module, path in read_modules(root).items() if rank_of(module) is None]


def upward_imports(imports: list[Import]) -> list[str]:
    problems = []
    for i in imports:
        low, high = rank_of(i.importer), rank_of(i.target)
        if low is not None and high is not None and low < high:
            problems.append(f"{i.where} imports {i.target} ({_layer(low)} -> {_layer(high)})")
    return problems


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components of `graph`."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _shortest_cycle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest loop start -> ... -> start inside `within` (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & within):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if nxt not in came_from:
                    came_from[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"{start} is in a strongly connected component but on no loop")


def import_cycles(root: Path, imports: list[Import]) -> list[str]:
    modules = read_modules(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    first: dict[tuple[str, str], Import] = {}
    for i in imports:
        if i.target in modules and i.target != i.importer:
            graph[i.importer].add(i.target)
            first.setdefault((i.importer, i.target), i)
    problems = []
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        cycle = _shortest_cycle(graph, component[0], set(component))
        edges = ", ".join(first[a, b].where for a, b in zip(cycle, cycle[1:], strict=False))
        rest = [m for m in component if m not in cycle]
        also = f"; the same tangle also holds {', '.join(rest)}" if rest else ""
        problems.append(f"{' -> '.join(cycle)} (at {edges}){also}")
    return problems


def nested_own_imports(imports: list[Import]) -> list[str]:
    """Project imports inside a function or class that no `# lazy: <reason>` comment explains."""
    return [f"{i.where} imports {i.target} inside {i.scope}"
            for i in imports if not i.module_level and not i.lazy_reason]


def unexplained_lazy_imports(root: Path) -> list[str]:
    """Imports of any module (standard library, third-party, project) inside a function or
    class body, outside `if TYPE_CHECKING:`, that no `# lazy: <reason>` comment explains."""
    tree, files, lines = _read_tree(root)
    problems = []
    for module, file in files.items():
        for node, scope, module_level in _import_statements(tree.parsed[module]):
            if not module_level and not _lazy_reason(lines[module], node.lineno):
                names = ", ".join(_resolve(module, node, tree))
                problems.append(f"{file}:{node.lineno} imports {names} inside {scope}")
    return problems


def toolkit_imports(imports: list[Import]) -> list[str]:
    return [f"{i.where} imports {i.target}" for i in imports
            if i.importer.split(".")[0] == "memcourse"
            and i.target.split(".")[0] in ("autograder", "memcourse_apps")]


def missing_targets(root: Path, imports: list[Import]) -> list[str]:
    modules = read_modules(root)
    return [f"{i.where} imports {i.target}, which does not exist" for i in imports
            if i.target not in modules]


# ----------------------------------------------------------------------------- the real tree

UPWARD = ("A lower layer imports a higher one: move the shared code down to a layer both may "
          "import, or move the importing module up.")
CYCLES = ("Project modules import each other in a loop: move the code both sides need into a "
          "module that neither imports, or merge them.")
NESTED = ("Project modules are imported inside functions or classes: move each import to the "
          "top of its file; only where the module pulls in a heavy third-party one (torch, "
          "nbgrader) at a moment that must stay fast, keep it and say so in a "
          "`# lazy: <reason>` comment on the import or the line above.")
LAZY_WHY = ("Modules are imported inside functions or classes without a reason: move each "
            "import to the top of its file, or say why it must wait in a `# lazy: <reason>` "
            "comment on the import or the line above (a heavy module such as torch, nbgrader or "
            "IPython at a moment that must stay fast, or an import whose timing matters).")
TOOLKIT = ("The memcourse toolkit, which learners import in their own code, must stand alone: "
           "move the code that needs autograder or memcourse_apps out of memcourse, or move the "
           "shared code down into memcourse.")
MISSING = ("Project imports name modules that do not exist: point each at the module's new "
           "name, or restore the module.")


def _fail_on(header: str, problems: list[str]) -> None:
    """Fail with the header sentence and one indented line per problem, all of them."""
    if problems:
        pytest.fail("\n  ".join([header, *problems]), pytrace=False)


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return read_imports(ROOT)


def test_every_module_is_in_a_layer():
    """Does the layer table place every module of the three packages?"""
    _fail_on("Modules that no layer holds:", unplaced_modules(ROOT))


def test_no_module_imports_a_higher_layer(imports):
    """Does every module import only from its own layer or lower ones?"""
    _fail_on(UPWARD, upward_imports(imports))


def test_no_import_cycles(imports):
    """Are the project's imports free of loops, counting imports inside functions too?"""
    _fail_on(CYCLES, import_cycles(ROOT, imports))


def test_own_modules_are_imported_at_module_level(imports):
    """Are the project's own modules imported at the top of each file, never lazily?"""
    _fail_on(NESTED, nested_own_imports(imports))


def test_lazy_imports_say_why():
    """Does every import inside a function or class, of any module, say why it must wait?"""
    _fail_on(LAZY_WHY, unexplained_lazy_imports(ROOT))


def test_toolkit_stands_alone(imports):
    """Does the memcourse toolkit learners import stay free of autograder and the apps?"""
    _fail_on(TOOLKIT, toolkit_imports(imports))


def test_project_imports_name_existing_modules(imports):
    """Does every import of a project module name a module that exists?"""
    _fail_on(MISSING, missing_targets(ROOT, imports))


# ----------------------------------------------------------------------------- self-tests


def _copy_tree(dest: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _append(root: Path, rel: str, text: str) -> int:
    """Append `text` to a file of the tree; return the line number its first line gets."""
    path = root / rel
    before = path.read_text()
    if before and not before.endswith("\n"):
        before += "\n"
    path.write_text(before + text)
    return before.count("\n") + 1


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A disposable copy of the three packages, to break on purpose."""
    return _copy_tree(tmp_path / "tree")


def test_checker_reports_an_upward_import(tree):
    """Is an import from the engine of the grading layer reported with both ranks?"""
    line = _append(tree, "autograder/engine/limits.py",
                   "from autograder.grading import pipeline  # noqa\n")
    problems = upward_imports(read_imports(tree))
    assert (f"autograder/engine/limits.py:{line} imports autograder.grading.pipeline "
            "(rank 1 'engine' -> rank 4 'grading')") in problems


def test_checker_reports_every_upward_import_at_once(tree):
    """Are two upward imports in different files both reported, not just the first?"""
    one = _append(tree, "memcourse/errors.py", "import memcourse_apps.cli\n")
    two = _append(tree, "autograder/hints.py",
                  "def later():\n    from .grading.build import main\n")
    problems = upward_imports(read_imports(tree))
    assert (f"memcourse/errors.py:{one} imports memcourse_apps.cli "
            "(rank 0 'toolkit' -> rank 5 'apps')") in problems
    assert (f"autograder/hints.py:{two + 1} imports autograder.grading.build "
            "(rank 3 'learner aids' -> rank 4 'grading')") in problems


def test_checker_reports_the_toolkit_importing_the_grader(tree):
    """Is a toolkit import of autograder reported by the toolkit check itself?"""
    line = _append(tree, "memcourse/memory.py",
                   "try:\n    import autograder.engine.spec\nexcept ImportError:\n    pass\n")
    assert (f"memcourse/memory.py:{line + 1} imports autograder.engine.spec"
            in toolkit_imports(read_imports(tree)))


def test_checker_reports_a_cycle_in_order(tree):
    """Is a loop of three new modules named in import order, with where each import is?"""
    _write(tree, "autograder/engine/zz_a.py", "from autograder.engine import zz_b\n")
    _write(tree, "autograder/engine/zz_b.py",
           "def f():\n    from . import zz_c\n    return zz_c\n")
    _write(tree, "autograder/engine/zz_c.py", "import autograder.engine.zz_a\n")
    problems = import_cycles(tree, read_imports(tree))
    assert ("autograder.engine.zz_a -> autograder.engine.zz_b -> autograder.engine.zz_c -> "
            "autograder.engine.zz_a (at autograder/engine/zz_a.py:1, "
            "autograder/engine/zz_b.py:2, autograder/engine/zz_c.py:1)") in problems


def test_checker_counts_a_package_import_as_its_init(tree):
    """Does importing a package close a loop through that package's __init__?"""
    _write(tree, "autograder/engine/__init__.py", "from autograder.engine import zz_d\n")
    _write(tree, "autograder/engine/zz_d.py", "import autograder.engine\n")
    problems = import_cycles(tree, read_imports(tree))
    assert any(p.startswith("autograder.engine -> autograder.engine.zz_d -> autograder.engine ")
               for p in problems), problems


def test_checker_reports_a_function_level_own_import(tree):
    """Is an own-module import inside a method reported, and a lazy torch import not?"""
    line = _append(tree, "autograder/cells.py",
                   "class Later:\n"
                   "    def go(self):\n"
                   "        import torch  # heavy third-party: fine\n"
                   "        from autograder.engine.richtext import show\n"
                   "        return torch, show\n")
    problems = nested_own_imports(read_imports(tree))
    assert (f"autograder/cells.py:{line + 3} imports autograder.engine.richtext "
            "inside class Later > go()") in problems
    assert not any(p.startswith(f"autograder/cells.py:{line + 2} ") for p in problems)


def test_checker_accepts_a_lazy_own_import_that_says_why(tree):
    """Is a nested own import with a `# lazy:` reason accepted, and one without it reported?"""
    line = _append(tree, "autograder/cells.py",
                   "def explained():\n"
                   "    # lazy: imports torch, which a learner's hint() must not wait for\n"
                   "    from autograder.engine import richtext\n"
                   "    from autograder.engine import spec  # lazy: says why on its own line\n"
                   "    from autograder.engine import limits\n"
                   "    return richtext, spec, limits\n")
    problems = nested_own_imports(read_imports(tree))
    flagged = {p.split(" ")[0] for p in problems if p.startswith("autograder/cells.py")}
    assert flagged == {f"autograder/cells.py:{line + 4}"}


def test_checker_reports_a_lazy_import_without_a_reason(tree):
    """Is an uncommented nested `import json` reported, and a commented lazy torch import not?"""
    line = _append(tree, "autograder/cells.py",
                   "class Later:\n"
                   "    def go(self):\n"
                   "        import json\n"
                   "        import torch  # lazy: ~2 s, and hint() must stay fast\n"
                   "        # lazy: says why on the line above\n"
                   "        from . import course\n"
                   "        from .engine import spec\n"
                   "        return json, torch, course, spec\n")
    problems = unexplained_lazy_imports(tree)
    assert f"autograder/cells.py:{line + 2} imports json inside class Later > go()" in problems
    assert (f"autograder/cells.py:{line + 6} imports autograder.engine.spec inside "
            "class Later > go()") in problems
    flagged = {p.split(" ")[0] for p in problems if p.startswith("autograder/cells.py")}
    assert flagged == {f"autograder/cells.py:{line + 2}", f"autograder/cells.py:{line + 6}"}


def test_checker_reports_an_unplaced_module(tree):
    """Does a new module outside every layer fail with the advice to place it?"""
    _write(tree, "autograder/newthing.py", "")
    _write(tree, "autograder/extras/__init__.py", "")
    problems = unplaced_modules(tree)
    assert ("autograder/newthing.py (module autograder.newthing) is in no layer: place it in "
            "LAYERS in tests/test_architecture.py and in the layer table of CONTRIBUTING.md."
            ) in problems
    assert any(p.startswith("autograder/extras/__init__.py (module autograder.extras) ")
               for p in problems)


def test_checker_reports_a_stale_import(tree):
    """Is an import of a module that was moved away reported, in either import form?"""
    line = _append(tree, "autograder/course.py",
                   "from autograder.engine.gone import thing\n"
                   "from autograder.grading import gone_too, build\n"
                   "from autograder.exercises import all_exercises\n")
    imports = read_imports(tree)
    problems = missing_targets(tree, imports)
    assert (f"autograder/course.py:{line} imports autograder.engine.gone, which does not exist"
            in problems)
    assert (f"autograder/course.py:{line + 1} imports autograder.grading.gone_too, which does "
            "not exist") in problems
    assert not any(p.startswith(f"autograder/course.py:{line + 2} ") for p in problems)
    assert {i.target for i in imports if i.file == "autograder/course.py" and i.line > line} == {
        "autograder.grading.build", "autograder.grading.gone_too", "autograder.exercises"}


def test_checker_accepts_a_clean_tree(tmp_path):
    """Does a tree that keeps every rule pass every check, whatever import forms it uses?"""
    root = tmp_path / "clean"
    _write(root, "memcourse/__init__.py", "")
    _write(root, "memcourse/data.py", "import numpy\n")
    _write(root, "autograder/__init__.py", "")
    _write(root, "autograder/engine/__init__.py", "")
    _write(root, "autograder/engine/spec.py", "from memcourse import data\n")
    _write(root, "autograder/engine/runner.py",
           "from __future__ import annotations\n"
           "from typing import TYPE_CHECKING\n"
           "from . import spec\n"
           "from .spec import thing\n"
           "try:\n    import memcourse.data\nexcept ImportError:\n    pass\n"
           "if TYPE_CHECKING:\n    from autograder.engine.spec import Other\n"
           "def run():\n"
           "    import torch  # lazy: heavy\n"
           "    if TYPE_CHECKING:\n        from memcourse.data import Typed\n")
    _write(root, "autograder/exercises/__init__.py", "from ..engine.spec import Exercise\n")
    _write(root, "autograder/exercises/one.py",
           "from autograder.exercises import Exercise\nfrom autograder import engine\n")
    _write(root, "autograder/cells.py", "")
    _write(root, "autograder/course.py", "from autograder import cells, exercises\n")
    _write(root, "autograder/hints.py", "from autograder.exercises import one\n")
    _write(root, "autograder/widgets.py", "from . import hints\n")
    _write(root, "autograder/grading/__init__.py", "")
    _write(root, "autograder/grading/build.py", "from autograder import course, widgets\n")
    _write(root, "memcourse_apps/__init__.py", "")
    _write(root, "memcourse_apps/bench/__init__.py", "from .common import x\n")
    _write(root, "memcourse_apps/bench/common.py", "from ..cli import y\n")
    _write(root, "memcourse_apps/cli.py", "from autograder.grading.build import main\n")
    imports = read_imports(root)
    assert {(i.importer, i.target) for i in imports} >= {
        ("autograder.engine.runner", "autograder.engine.spec"),
        ("autograder.exercises", "autograder.engine.spec"),
        ("autograder.exercises.one", "autograder.engine"),
        ("autograder.course", "autograder.exercises"),
        ("autograder.widgets", "autograder.hints"),
        ("memcourse_apps.bench", "memcourse_apps.bench.common"),
        ("memcourse_apps.bench.common", "memcourse_apps.cli"),
    }
    assert not any(i.target in ("torch", "numpy") for i in imports)
    assert unplaced_modules(root) == []
    assert upward_imports(imports) == []
    assert import_cycles(root, imports) == []
    assert nested_own_imports(imports) == []
    assert unexplained_lazy_imports(root) == []
    assert toolkit_imports(imports) == []
    assert missing_targets(root, imports) == []
