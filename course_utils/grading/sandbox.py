"""The untrusted side of grading: run a submission's cells, then answer requests about its names.

`course-grade` starts `python -m course_utils.grading.sandbox IN_FD OUT_FD MAX_PROCESSES UID` inside
the isolation (see `isolation`; a UID other than 0: started as root, drop to it first), sends the notebook's code cells as the first request, and this process runs them
in an IPython shell (magics work; a cell that raises is noted and the next one runs, as with otter's
`allow_errors`). It then answers, until the pipe closes, requests of five kinds:
`get` (the value of a name, or of an attribute of an object it handed out), `call` (call one with
plain-data arguments), `vjp` (the gradient of a call's outputs with respect to its inputs, so the
grader's own autograd can run through a student's function), `pretrained` (load a transformers
model or tokenizer of the grader's from its files, so a test can hand the student's function an
object the notebook never touched) and `forbid` (the library paths the question being tested
forbids: later requests run under `watch`, and answers list the paths reached). Answers are plain
data (`wire`); any other object stays here, and the grader only gets a numbered handle to it.

Nothing in here is trusted: the student's code runs in this process and may rewrite any of it. It
decides no verdict: the grader computes every verdict from the plain data this process sends.

Before the cells run, what they see from Python looks like a student's own session (`blend_in`):
an interactive `sys.argv`, no grading module in `sys.modules`, an ordinary host name. A determined
notebook can still tell (the pipes, `/proc/self/cmdline`), and gains nothing by it: it never sees
the tests, and the inputs they send are drawn afresh for each run.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Any

from course_utils.grading import isolation, watch, wire

CELL_NAME = re.compile(r"<ipython-input-[^>]*>")  # holds a random hash: keep feedback stable
MAX_HANDLES = 10_000


class Server:
    """The state of a sandbox: the notebook's namespace, the objects handed out and the graphs kept."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.handles: dict[int, Any] = {}
        self.graphs: dict[int, tuple[list[Any], list[Any]]] = {}
        self.watch = watch.Watch([])

    def make_ref(self, value: Any) -> dict:
        """A handle to `value`, which stays in this process."""
        if len(self.handles) >= MAX_HANDLES:
            raise wire.WireError(f"more than {MAX_HANDLES} objects handed out")
        n = len(self.handles)
        self.handles[n] = value
        return {"handle": n, "callable": callable(value)}

    def resolve(self, ref: Any) -> Any:
        """The object a reference from the grader names (a namespace name or a handle)."""
        if isinstance(ref, dict) and type(ref.get("name")) is str:
            if ref["name"] not in self.namespace:
                raise NameError(f"name {ref['name']!r} is not defined")
            return self.namespace[ref["name"]]
        if (
            isinstance(ref, dict)
            and type(ref.get("handle")) is int
            and ref["handle"] in self.handles
        ):
            return self.handles[ref["handle"]]
        raise wire.WireError(f"unknown reference {str(ref)[:80]}")

    def target(self, request: dict) -> Any:
        """The object a request is about: its `target`, then its `attr` if given."""
        obj = self.resolve(request.get("target"))
        attr = request.get("attr")
        if attr is None:
            return obj
        if type(attr) is not str or attr.startswith("__"):
            raise wire.WireError("attr must be a public attribute name")
        return getattr(obj, attr)

    def handle(self, request: dict, blob: bytes) -> tuple[dict, bytes]:
        """The answer to one request: its header and blob."""
        op = request.get("op")
        enc = wire.Encoder(self.make_ref)
        if op == "get":
            try:
                value = self.watch.run(lambda: self.target(request))  # a property runs code too
            except (NameError, AttributeError):
                return {"missing": True}, b""
            return {"value": enc.encode(value)}, enc.blob()
        if op == "call":
            func = self.target(request)
            dec = wire.Decoder(blob, self.resolve, set_grad=True)
            args = dec.decode(request.get("args"))
            kwargs = dec.decode(request.get("kwargs"))
            if not (isinstance(args, list) and isinstance(kwargs, dict)):
                raise wire.WireError("call needs a list of args and a dict of kwargs")
            result = self.watch.run(lambda: func(*args, **kwargs))
            answer = {"value": enc.encode(result)}
            if dec.grad_tensors and enc.grad_tensors:
                answer["graph"] = len(self.graphs)
                self.graphs[len(self.graphs)] = (dec.grad_tensors, enc.grad_tensors)
            return answer, enc.blob()
        if op == "vjp":
            import torch

            inputs, outputs = self.graphs.pop(request.get("graph"), (None, None))
            if inputs is None:
                raise wire.WireError("unknown or already used graph")
            grads = wire.Decoder(blob, self.resolve, set_grad=False).decode(request.get("grads"))
            if not isinstance(grads, list) or len(grads) != len(outputs):
                raise wire.WireError("vjp needs one gradient per output")
            pairs = [(o, g) for o, g in zip(outputs, grads, strict=True) if g is not None]
            result = self.watch.run(
                lambda: torch.autograd.grad(
                    [o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True
                )
            )
            return {"value": enc.encode([None if g is None else g.detach() for g in result])}, enc.blob()  # fmt: skip
        if op == "pretrained":
            files = wire.Decoder(blob, self.resolve, set_grad=False).decode(request.get("files"))
            return {"value": enc.encode(load_pretrained(request.get("kind"), files))}, enc.blob()
        if op == "forbid":
            paths = request.get("paths")
            if not (isinstance(paths, list) and all(type(p) is str for p in paths)):
                raise wire.WireError("forbid needs a list of dotted paths")
            self.watch = watch.Watch(paths)
            return {"value": None}, b""
        raise wire.WireError(f"unknown op {str(op)[:40]}")

    def serve(self, in_fd: int, out_fd: int) -> None:
        """Answer requests until the grader closes the pipe."""
        while True:
            try:
                request, blob = wire.read_frame(in_fd)
            except EOFError:
                return
            try:
                header, data = self.handle(request, blob)
            except BaseException as e:  # the student's code raised (SystemExit included)
                header, data = {"error": error_record(e)}, b""
            if self.watch.hits:
                header["library"] = sorted(self.watch.hits)
                self.watch.hits.clear()
            wire.write_frame(out_fd, header, data)


PRETRAINED = {"masked_lm": "AutoModelForMaskedLM", "tokenizer": "AutoTokenizer"}
FILE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def load_pretrained(kind: Any, files: Any) -> Any:
    """A transformers model or tokenizer of the grader's, loaded from its `save_pretrained` files."""
    import tempfile

    import torch
    import transformers

    if kind not in PRETRAINED:
        raise wire.WireError(f"kind must be one of {sorted(PRETRAINED)}")
    if not (isinstance(files, dict) and 0 < len(files) <= 32):
        raise wire.WireError("files must be a dict of at most 32 files")
    folder = tempfile.mkdtemp(prefix="grader-pretrained-")
    for name, data in files.items():
        if not (type(name) is str and FILE_NAME.fullmatch(name) and not name.startswith(".")):
            raise wire.WireError("a file name must be a plain name")
        if not (type(data) is torch.Tensor and data.dtype == torch.uint8 and data.dim() == 1):
            raise wire.WireError("a file must be a 1-D uint8 tensor")
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data.numpy().tobytes())
    loaded = getattr(transformers, PRETRAINED[kind]).from_pretrained(folder)
    return loaded.eval() if kind != "tokenizer" else loaded


def error_record(e: BaseException) -> dict:
    """The plain-data description of an exception: its class name and first message line."""
    message = str(e).strip().split("\n")[0] if str(e).strip() else ""
    return {"type": type(e).__name__[:80], "message": CELL_NAME.sub("<cell>", message)[:500]}


def run_cells(cells: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Run code cells in an IPython shell; its namespace and the errors of the cells that raised."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance(colors="NoColor")  # plain tracebacks in the log
    errors = []
    for index, source in enumerate(cells, start=1):
        result = shell.run_cell(source, store_history=False)
        error = result.error_before_exec or result.error_in_exec
        if error is not None:
            record = error_record(error)
            errors.append(
                f"code cell {index}: {record['type']}"
                + (f": {record['message'][:200]}" if record["message"] else "")
            )
    return shell.user_ns, errors


def drop_to(uid: int) -> None:
    """Become `uid` (with no other group) and own the working directory; fail rather than stay root."""
    os.chown(".", uid, uid)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if 0 in (os.getuid(), os.geteuid(), os.getgid()):
        raise SystemExit("the sandbox could not drop root")


def blend_in() -> None:
    """Hide the grading machinery from the notebook's view of its interpreter."""
    import course_utils

    sys.argv = [""]  # as in an interactive interpreter
    for name in [m for m in sys.modules if m.startswith("course_utils.grading")]:
        del sys.modules[name]  # this module keeps its own references
    course_utils.__dict__.pop("grading", None)


def main() -> None:
    """Entry point: read the cells from the pipe, run them, report, then serve requests."""
    in_fd, out_fd, processes, uid = (int(a) for a in sys.argv[1:5])
    if uid:
        drop_to(uid)
    isolation.limit_processes(processes)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file over the size limit: an error, not death
    request, _ = wire.read_frame(in_fd)
    cells = request.get("cells")
    if not (isinstance(cells, list) and all(type(c) is str for c in cells)):
        raise SystemExit("the first request must carry the cells")
    blend_in()
    namespace, errors = run_cells(cells)
    wire.write_frame(out_fd, {"ready": errors})
    Server(namespace).serve(in_fd, out_fd)
    sys.stdout.flush()
    os._exit(0)  # do not wait for threads the notebook may have left running


if __name__ == "__main__":
    main()
