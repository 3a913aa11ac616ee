"""Static checks on a student's function: which names its definition mentions.

A hidden test that forbids a library call ("q1 must not call `info_nce`") cannot patch the library:
the student's code runs in another process. Instead it reads the function's source text: in the
grader, from the submitted notebook's cells (held by the grader, never asked of the sandbox); in a
notebook kernel (the master run by nbval, a student's `grader.check`), from the live function. The
names cover the function's body, the notebook functions it calls (transitively), and what import
aliases and plain assignments (`ce = F.cross_entropy`) stand for. Calls built from strings
(`getattr(m, "info" + "_nce")`) are not seen: review flagged notebooks by hand.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any


def _parse(source: str) -> ast.Module | None:
    """The AST of a cell (IPython magics turned into Python first), or None if it does not parse."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None


def _definitions(trees: list[ast.Module]) -> tuple[dict[str, ast.AST], dict[str, set[str]]]:
    """Top-level function definitions (last wins) and alias -> names it stands for."""
    defs: dict[str, ast.AST] = {}
    aliases: dict[str, set[str]] = {}
    for tree in trees:
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defs[node.name] = node
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for a in node.names:
                    aliases.setdefault(a.asname or a.name.split(".")[0], set()).update(
                        a.name.split(".")
                    )
            elif isinstance(node, ast.Assign):
                stands_for = _mentioned(node.value)
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        aliases.setdefault(target.id, set()).update(stands_for)
    return defs, aliases


def _mentioned(node: ast.AST) -> set[str]:
    """Every identifier and attribute name in `node`."""
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            names.add(n.id)
        elif isinstance(n, ast.Attribute):
            names.add(n.attr)
    return names


def _closure(name: str, defs: dict[str, ast.AST], aliases: dict[str, set[str]]) -> set[str]:
    """Names mentioned by `name`'s definition and by the notebook functions it reaches."""
    seen, todo, found = set(), [name], set()
    while todo:
        current = todo.pop()
        if current in seen or current not in defs:
            continue
        seen.add(current)
        for n in _mentioned(defs[current]):
            found.add(n)
            found.update(aliases.get(n, ()))
            todo.append(n)
            todo.extend(aliases.get(n, ()))
    return found


def referenced_names(func: Any) -> set[str]:
    """Every name the definition of the student's function `func` mentions (see module doc)."""
    from course_utils.grading.session import Remote

    if isinstance(func, Remote):  # in the grader: the submitted cells, parsed here
        trees = [t for t in map(_parse, func._session.cells) if t is not None]
        defs, aliases = _definitions(trees)
        name = func._label
    else:  # in a notebook kernel: the live function and what its globals hold
        tree = _parse(textwrap.dedent(inspect.getsource(func)))
        defs, aliases = _definitions([tree] if tree else [])
        name = func.__name__
        for key, value in getattr(func, "__globals__", {}).items():
            real = getattr(value, "__name__", None)
            if isinstance(real, str) and real != key:
                aliases.setdefault(key, set()).add(real.split(".")[-1])
    if name not in defs:
        raise ValueError(f"no definition of {name} found in the notebook")
    return _closure(name, defs, aliases)
