"""Which forbidden library code a submission's function runs while the grader calls it (sandbox side).

A question that says "write it yourself" names, in its rule test case, the library paths it forbids
(`course_utils.losses`, `torch.nn.functional.cross_entropy`). While the grader tests that question,
the sandbox runs each of its calls under a profile hook (`sys.setprofile`, and `threading.setprofile`
for threads started meanwhile) that notes every call into forbidden code, however the function was
reached: an import under another name, `importlib` with a computed name, `exec` of encoded source, a
copy of the function object. A path names a module or package (every function defined in its files),
a Python function (its code), a class (the functions it defines) or a builtin. Removing the hook during
a call, or calling `setprofile` at all, counts as a violation too.

This runs in the student's process, so it is a detector, not a wall: code that rewrites the sandbox
server itself could silence it. The grader also reads the question's own definition (`source`).
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import types
from collections.abc import Callable, Iterable
from typing import Any

TAMPERING = "the grader's call monitor (sys.setprofile)"
_THREADING_SETPROFILE = threading.setprofile.__code__


def _resolve(path: str) -> Any:
    """The object a dotted path names (importing its longest module prefix), or None."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # not a module (or not importable here): try a shorter prefix
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
        return obj
    return None


class Watch:
    """The forbidden code of one question, and the paths its calls reached."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.codes: dict[types.CodeType, str] = {}
        self.places: dict[tuple[str, int], str] = {}  # (file, first line) of a function: copies too
        self.files: dict[str, str] = {}
        self.folders: dict[str, str] = {}
        self.builtins: dict[int, str] = {}
        self.hits: set[str] = set()
        self._armed = False  # False while the hook removes itself
        for path in paths:
            self._add(path, _resolve(path))

    def _add(self, path: str, obj: Any) -> None:
        if isinstance(obj, types.ModuleType):
            origin = getattr(obj, "__file__", None)
            if origin and os.path.basename(origin) == "__init__.py":
                self.folders[os.path.dirname(origin) + os.sep] = path
            elif origin:
                self.files[origin] = path
        elif isinstance(obj, types.FunctionType | types.MethodType):
            code = getattr(obj, "__func__", obj).__code__
            self.codes[code] = path
            self.places[(code.co_filename, code.co_firstlineno)] = path
        elif isinstance(obj, type):
            for value in vars(obj).values():
                if isinstance(value, types.FunctionType):
                    self._add(path, value)
        elif isinstance(obj, types.BuiltinFunctionType):
            self.builtins[id(obj)] = path

    def _match(self, code: types.CodeType) -> str | None:
        """The forbidden path `code` belongs to, if any."""
        file = code.co_filename
        path = (
            self.codes.get(code)
            or self.places.get((file, code.co_firstlineno))
            or self.files.get(file)
        )
        return path or next((p for f, p in self.folders.items() if file.startswith(f)), None)

    def hook(self, frame: types.FrameType, event: str, arg: Any) -> None:
        """The profile function: note a call into forbidden code, or into setprofile."""
        if event == "call":
            code = frame.f_code
            if code is _THREADING_SETPROFILE:
                self.hits.add(TAMPERING)
            path = self._match(code)
            if path is not None:
                self.hits.add(path)
        elif event == "c_call":
            if arg is sys.setprofile and self._armed:
                self.hits.add(TAMPERING)
            path = self.builtins.get(id(arg))
            if path is not None:
                self.hits.add(path)

    def run(self, func: Callable[[], Any]) -> Any:
        """`func()` under the hook; the hook is checked again after it returns."""
        if not (self.codes or self.files or self.folders or self.builtins):
            return func()
        hook = self.hook  # one bound method: getprofile() returns this object
        threading.setprofile(hook)
        sys.setprofile(hook)
        self._armed = True
        try:
            return func()
        finally:
            self._armed = False
            still = sys.getprofile() is hook
            sys.setprofile(None)
            threading.setprofile(None)
            if not still:
                self.hits.add(TAMPERING)
