"""The import graph of ``ian_d2``: no cycle, and ``ian_d2.config`` is a leaf.

The graph is read from the source (``ast``), not by importing: an edge A -> B means that importing
module A runs an import of ian_d2 module B (statements at module level, including those inside
``if``/``try``/``with`` blocks and class bodies; imports inside functions run later, on call, and
``if TYPE_CHECKING:`` blocks never run). ``from pkg import name`` is an edge to ``pkg.name`` when
that is a module of the package, else to ``pkg`` (its ``__init__``).

The graph with deferred imports (``import_graph(deferred=True)``) adds the imports inside functions:
an import deferred into a function only to break a circle still makes one (a layering question
left open), so no cycle is allowed there either.
"""

import ast
import os
import unittest
from typing import Dict, List, Set

import ian_d2

PACKAGE_DIR = os.path.dirname(os.path.abspath(ian_d2.__file__))


def _module_files() -> Dict[str, str]:
    """{dotted module name: file} of every module of the ian_d2 source tree."""
    root = os.path.dirname(PACKAGE_DIR)
    out = {}
    for folder, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            if not f.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(folder, f), root)[: -len(".py")]
            parts = rel.split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = os.path.join(folder, f)
    return out


def _import_time_statements(body: List[ast.stmt]):
    """The import statements of ``body`` that run when the module is imported."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        elif isinstance(node, ast.If):
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
            ):
                yield from _import_time_statements(node.orelse)
                continue
            yield from _import_time_statements(node.body)
            yield from _import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _import_time_statements(block)
            for handler in node.handlers:
                yield from _import_time_statements(handler.body)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from _import_time_statements(node.body)


def _all_import_statements(body: List[ast.stmt]):
    """Every import statement of ``body``, inside functions too (``TYPE_CHECKING`` blocks too)."""
    for node in body:
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                yield sub


def import_graph(deferred: bool = False) -> Dict[str, Set[str]]:
    """{module: the ian_d2 modules that importing it imports} (see the module docstring); with
    ``deferred``, also those its functions import when called."""
    statements = _all_import_statements if deferred else _import_time_statements
    files = _module_files()
    graph = {}
    for name, path in files.items():
        is_package = path.endswith("__init__.py")
        package = name if is_package else name.rpartition(".")[0]
        with open(path) as f:
            tree = ast.parse(f.read(), filename=path)
        edges = set()
        for node in statements(tree.body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base_parts = package.split(".")
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = []
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in files else base)
            for target in targets:
                # `import a.b.c` runs a, a.b and a.b.c: the deepest module of ian_d2 counts
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (or a module importing itself),
    each as a sorted list (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    out.append(sorted(component))
    return out


def reachable(graph: Dict[str, Set[str]], start: str) -> Set[str]:
    """Every module that importing ``start`` imports, directly or not."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


class TestImportGraph(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.graph = import_graph()
        cls.deferred = import_graph(deferred=True)

    def test_graph_is_read(self):
        # the reader sees the package's real structure (guards against an empty, vacuous graph)
        self.assertIn("ian_d2.modeling.roi_heads", self.graph)
        self.assertIn("ian_d2.modeling.losses", self.graph["ian_d2.modeling.roi_heads"])
        self.assertIn("ian_d2.modeling.num_pids", self.graph["ian_d2.modeling.meta_arch"])
        self.assertGreater(sum(len(e) for e in self.graph.values()), 100)

    def test_no_import_cycle(self):
        cycles = find_cycles(self.graph)
        self.assertEqual(cycles, [], "import cycles in ian_d2: " + "; ".join(map(str, cycles)))

    def test_no_import_cycle_through_deferred_imports(self):
        # e.g. export.checks -> precision -> (deferred) quantize -> checks, closed before by an
        # import inside precision_detail
        self.assertIn("ian_d2.modeling", self.deferred["ian_d2.export.checks"])  # deferred edge
        cycles = find_cycles(self.deferred)
        self.assertEqual(cycles, [], "import cycles through deferred imports: " + str(cycles))

    def test_export_never_imports_search(self):
        # an export ships without the index package: what both use lives in ian_d2.utils
        exports = [m for m in self.deferred if m.startswith("ian_d2.export")]
        self.assertIn("ian_d2.export.manifest", exports)
        for module in exports:
            found = sorted(
                d for d in reachable(self.deferred, module) if d.startswith("ian_d2.search")
            )
            self.assertEqual(found, [], f"{module} imports the search package")

    def test_config_is_a_leaf(self):
        deps = reachable(self.graph, "ian_d2.config")
        heavy = sorted(
            d for d in deps if d.startswith(("ian_d2.modeling", "ian_d2.data", "ian_d2.engine"))
        )
        self.assertEqual(heavy, [], "ian_d2.config imports model or dataset modules")

    def test_losses_read_the_config_only(self):
        for loss in ("rss", "oim", "center"):
            deps = reachable(self.graph, f"ian_d2.modeling.losses.{loss}")
            self.assertNotIn("ian_d2.config", deps, loss)
            self.assertNotIn("ian_d2.modeling.num_pids", deps, loss)
            self.assertFalse([d for d in deps if d.startswith("ian_d2.data")], loss)


class TestCycleFinder(unittest.TestCase):
    """The checker itself finds what it must (a test that could not fail would prove nothing)."""

    def test_finds_a_cycle(self):
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
        self.assertEqual(find_cycles(graph), [["a", "b", "c"], ["e"]])

    def test_deferred_imports_are_read(self):
        # an import inside a function is an edge of the deferred graph only
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.py")
            with open(path, "w") as f:
                f.write("import os\n\ndef f():\n    import json\n")
            with open(path) as f:
                tree = ast.parse(f.read())
        top = [a.name for n in _import_time_statements(tree.body) for a in n.names]
        every = [a.name for n in _all_import_statements(tree.body) for a in n.names]
        self.assertEqual((top, every), (["os"], ["os", "json"]))

    def test_no_false_cycle(self):
        graph = {"a": {"b", "c"}, "b": {"c"}, "c": set()}
        self.assertEqual(find_cycles(graph), [])


if __name__ == "__main__":
    unittest.main()
