"""Static checks on a student's function: which library names its own definition reaches.

A hidden test that forbids a library call ("q1 must not call `info_nce`") reads the definition of
the question's function: in the grader, from the submitted notebook's cells (held by the grader,
never asked of the sandbox); in a notebook kernel (the master run by nbval, a student's
`grader.check`), from the live function and its globals. Only that definition is read (every
top-level definition of the name, however nested in `if`/`try` blocks, and the notebook functions
and classes it reaches); its local names stay local; global names are resolved through the
notebook's imports and plain aliases (`ce = F.cross_entropy`) into dotted paths
(`torch.nn.functional.cross_entropy`), attribute chains and `getattr(x, "name")` included. Cells
are parsed through IPython magics (`%%time` included). Names looked up at run time (`importlib`,
`__import__`, `exec`, `eval`, `vars`, `globals`, `getattr` with a computed name, `__dict__`) cannot
be resolved and are reported as such.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DYNAMIC_CALLS = {"__import__", "exec", "eval", "compile", "vars", "globals", "locals"}
DYNAMIC_PATHS = ("importlib", "sys.modules")
CODE_RUNNERS = {"exec", "eval", "compile", "__import__"}  # at top level they may define anything
BLOCKS = (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.AsyncFor, ast.AsyncWith)


def parse_cell(source: str) -> ast.Module | None:
    """The AST of a cell (a cell magic's body, line magics turned into Python), or None."""
    from IPython.core.inputtransformer2 import TransformerManager

    if source.lstrip().startswith("%%"):  # a cell magic (%%time, %%capture): its body is the code
        source = source.lstrip().partition("\n")[2]
    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None


@dataclass
class Notebook:
    """What a notebook's top level defines: functions and classes, and what other names stand for."""

    defs: dict[str, list[ast.AST]] = field(default_factory=dict)
    paths: dict[str, set[str]] = field(default_factory=dict)
    runs_code: set[str] = field(default_factory=set)

    def add_tree(self, tree: ast.Module) -> None:
        """Record the top-level definitions, imports and aliases of one cell."""
        for node in _top_level(tree.body):
            if isinstance(node, ast.Expr | ast.Assign) and isinstance(node.value, ast.Call):
                func = node.value.func
                if isinstance(func, ast.Name) and func.id in CODE_RUNNERS:
                    self.runs_code.add(f"{func.id}() at the top level")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.defs.setdefault(node.name, []).append(node)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    path = a.name if a.asname else a.name.split(".")[0]
                    self.paths.setdefault(a.asname or path, set()).add(path)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for a in node.names:
                    self.paths.setdefault(a.asname or a.name, set()).add(f"{node.module}.{a.name}")
            elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):  # its value is read as part of a definition
                        self.defs.setdefault(target.id, []).append(node.value)


def _top_level(body: list[ast.stmt]) -> Iterable[ast.stmt]:
    """The statements of a module body, including those inside top-level if/for/with/try blocks."""
    for node in body:
        yield node
        if isinstance(node, BLOCKS):
            for part in ("body", "orelse", "finalbody"):
                yield from _top_level(getattr(node, part, []))
            for handler in getattr(node, "handlers", []):
                yield from _top_level(handler.body)


def _local_names(node: ast.AST) -> set[str]:
    """Names bound inside a definition: parameters, assignment targets, loop and import names."""
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.arg):
            names.add(n.arg)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del):
            names.add(n.id)
        elif isinstance(n, ast.alias):
            names.add(n.asname or n.name.split(".")[0])
        elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and n is not node:
            names.add(n.name)
    return names


def _chain(node: ast.AST) -> tuple[str, list[str]] | None:
    """`a.b.c` or `getattr(a.b, "c")` as ("a", ["b", "c"]); None for anything else."""
    attrs: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            attrs.insert(0, node.attr)
            node = node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            attrs.insert(0, node.args[1].value)
            node = node.args[0]
        elif isinstance(node, ast.Name):
            return node.id, attrs
        else:
            return None


def reached(name: str, notebook: Notebook) -> tuple[set[str], set[str]]:
    """(dotted library paths, run-time lookups) that the definition of `name` reaches."""
    paths: set[str] = set()
    dynamic: set[str] = set()
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for definition in notebook.defs.get(current, []):
            local = _local_names(definition)
            for node in ast.walk(definition):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    if node.func.id in DYNAMIC_CALLS and node.func.id not in local:
                        dynamic.add(f"{node.func.id}()")
                    if node.func.id == "getattr" and not (
                        len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                    ):
                        dynamic.add("getattr() with a computed name")
                if isinstance(node, ast.Attribute) and node.attr == "__dict__":
                    dynamic.add("__dict__")
                chain = _chain(node)
                if chain is None or chain[0] in local:
                    continue
                head, attrs = chain
                if head in notebook.defs:
                    todo.append(head)
                for base in notebook.paths.get(head, ()):
                    full = ".".join([base, *attrs])
                    paths.add(full)
                    if full.startswith(DYNAMIC_PATHS) or full.split(".")[-1] in DYNAMIC_CALLS:
                        dynamic.add(full)
    return paths, dynamic


def _kernel_notebook(func: Any) -> Notebook:
    """The Notebook seen from a live function: its source, and its globals resolved to paths."""
    notebook = Notebook()
    todo, done = [func], set()
    while todo:
        f = todo.pop()
        if id(f) in done:
            continue
        done.add(id(f))
        try:
            tree = parse_cell(textwrap.dedent(inspect.getsource(f)))
        except (OSError, TypeError):
            tree = None
        if tree is not None:
            notebook.add_tree(tree)
        for key, value in getattr(f, "__globals__", {}).items():
            if isinstance(value, types.ModuleType):
                notebook.paths.setdefault(key, set()).add(value.__name__)
                continue
            if not callable(value):
                continue
            if not isinstance(value, types.FunctionType | types.BuiltinFunctionType | type):
                value = type(value)  # an instance (a loss module, a partial): its class
            module = getattr(value, "__module__", None)
            qualname = getattr(value, "__qualname__", None)
            if module == f.__module__ and isinstance(value, types.FunctionType | type):
                todo.append(value)  # a function or class of the notebook: read its definition
            elif isinstance(module, str) and isinstance(qualname, str):
                notebook.paths.setdefault(key, set()).add(f"{module}.{qualname}")
    return notebook


def library_uses(func: Any, forbidden: Iterable[str]) -> list[str]:
    """What the definition of the student's `func` reaches among the dotted paths `forbidden`
    (a path forbids everything under it), and every name it looks up at run time; [] if none."""
    from course_utils.grading.session import Remote

    forbidden = tuple(forbidden)
    if isinstance(func, Remote):  # in the grader: the submitted cells, parsed here
        notebook = Notebook()
        for tree in filter(None, map(parse_cell, func._session.cells)):
            notebook.add_tree(tree)
        name = func._label
    elif callable(func):
        notebook, name = _kernel_notebook(func), func.__name__
    else:
        raise TypeError(f"func must be a function of the notebook, got {type(func).__name__}")
    if name not in notebook.defs:
        return [f"no definition of {name} in the notebook's code (defined at run time?)"]
    paths, dynamic = reached(name, notebook)
    dynamic |= notebook.runs_code
    hits = {p for p in paths if any(p == f or p.startswith(f + ".") for f in forbidden)}
    return sorted(hits) + sorted(f"{d} (resolved at run time, cannot be checked)" for d in dynamic)
