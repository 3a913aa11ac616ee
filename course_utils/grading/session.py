"""The trusted side of the sandbox pipe: start a submission's sandbox and talk to it in plain data.

`Session` starts the sandbox (`isolation.sandbox_launch`), sends the notebook's code cells, waits for
them to finish, and then stands in for the notebook's names: `lookup(name)` returns the name's value
when it is plain data (a number, a tensor, a dict of those...) rebuilt here by `wire`, or a `Remote`
standing for it. Calling a `Remote` sends the call to the sandbox; passing one as an argument
passes the sandbox's own object; reading an attribute asks the sandbox for it. When an argument
requires grad, the returned tensors are tied into this process's autograd graph (`_RemoteGrad`), so
`loss.backward()` here asks the sandbox for the vector-Jacobian product. Every request has a
deadline (the submission's one budget); past it, or when the sandbox dies, the request raises
`SandboxGone` and the session is over. Error names and messages the sandbox reports are checked and
escaped to one line here (`escape`), before any test or feedback sees them.

`TRUSTED_PHASE` serialises the tests of concurrent submissions (they share the global RNGs), but it
is never held while waiting on a sandbox: a round trip releases it and restores this thread's RNG
states when it gets it back, so a slow submission never holds up its classmates.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import random
import re
import select
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from course_utils.grading import escape, isolation, wire

LOG_CAP_BYTES = 64 * 1024
# Exceptions a sandbox may report that a test might catch by type; any other is a SandboxError.
BUILTIN_ERRORS = {
    name: getattr(builtins, name)
    for name in (
        "ValueError", "TypeError", "IndexError", "KeyError", "ZeroDivisionError", "RuntimeError",
        "AssertionError", "AttributeError", "NotImplementedError", "OverflowError", "NameError",
        "ArithmeticError", "LookupError",
    )
}  # fmt: skip


ERROR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,79}")


class TrustedPhase:
    """A lock for the trusted phase that a thread can give up while it waits on a sandbox."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def __enter__(self) -> TrustedPhase:
        self._lock.acquire()
        self._owner = threading.get_ident()
        return self

    def __exit__(self, *exc: object) -> None:
        self._owner = None
        self._lock.release()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Release the lock (if this thread holds it) for a wait; restore the RNG states after."""
        if self._owner != threading.get_ident():
            yield
            return
        import numpy as np

        states = torch.get_rng_state(), np.random.get_state(), random.getstate()
        self.__exit__()
        try:
            yield
        finally:
            self.__enter__()
            torch.set_rng_state(states[0])
            np.random.set_state(states[1])
            random.setstate(states[2])


TRUSTED_PHASE = TrustedPhase()


class SandboxGone(Exception):
    """The sandbox stopped answering: it timed out, crashed, exited or broke the protocol."""


class SandboxError(Exception):
    """An exception raised by the student's code that is not one of the builtin ones."""


@dataclass
class CapturedLog:
    """The sandbox's stdout and stderr, read by a thread: the first and last LOG_CAP_BYTES kept."""

    head: bytearray = field(default_factory=bytearray)
    tail: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def feed(self, chunk: bytes) -> None:
        """Keep `chunk` within the caps."""
        room = LOG_CAP_BYTES - len(self.head)
        self.head += chunk[:room]
        self.tail += chunk[room:] if room > 0 else chunk
        if len(self.tail) > LOG_CAP_BYTES:
            self.dropped += len(self.tail) - LOG_CAP_BYTES
            del self.tail[: len(self.tail) - LOG_CAP_BYTES]

    def text(self) -> str:
        """The captured output (control characters escaped), with a note where bytes were dropped."""
        gap = f"\n[... {self.dropped} bytes not kept ...]\n" if self.dropped else ""
        raw = (bytes(self.head) + gap.encode() + bytes(self.tail)).decode(errors="replace")
        return escape.log_text(raw)


class Session:
    """One running sandbox of one submission."""

    def __init__(
        self,
        cells: list[str],
        *,
        isolated: bool,
        profile: str,
        limits: isolation.Limits,
        scratch: str,
    ) -> None:
        self.log = CapturedLog()
        self.cells = cells
        self.deadline = float("inf")
        self.gone: str | None = None
        self._last_grad_tensors: list[Any] = []  # tensors of the last answer marked "grad"
        self.library_hits: set[str] = set()  # forbidden paths the watched calls reached
        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()
        log_r, log_w = os.pipe()
        env = isolation.sandbox_env(profile)
        cwd = None
        if not isolated:  # the package from where it is, a writable home in the scratch folder
            env |= {"PYTHONPATH": str(isolation.PACKAGE_DIR.parent), "HOME": scratch}
            env["MPLCONFIGDIR"] = os.path.join(scratch, ".matplotlib")
            cwd = scratch
        launch = None
        try:
            launch = self.launch = isolation.sandbox_launch(isolated, to_child, from_child, limits)
            try:
                self.proc = subprocess.Popen(
                    launch.command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_w,
                    stderr=log_w,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                    **launch.popen,
                )
            except BaseException:
                launch.cleanup()
                raise
        finally:
            for fd in (to_child, from_child, log_w, *(launch.fds if launch else ())):
                os.close(fd)
        self._reader = threading.Thread(target=self._drain, args=(log_r,), daemon=True)
        self._reader.start()

    def _drain(self, fd: int) -> None:
        """Read the sandbox's output until it closes (in a thread)."""
        with os.fdopen(fd, "rb", buffering=0) as f:
            while chunk := f.read(65536):
                self.log.feed(chunk)

    # ---- raw frames with a deadline -----------------------------------------------------------

    def _wait(self, fd: int, write: bool) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self._fail("timeout")
        ready = select.select([], [fd], [], left) if write else select.select([fd], [], [], left)
        if not any(ready):
            raise self._fail("timeout")

    def _fail(self, why: str) -> SandboxGone:
        self.gone = self.gone or why
        self.close()
        return SandboxGone(self.gone)

    def _send(self, header: dict, blob: bytes = b"") -> None:
        if self.gone:
            raise SandboxGone(self.gone)
        head = json.dumps(header, separators=(",", ":")).encode()
        data = memoryview(struct.pack(">QQ", len(head), len(blob)) + head + blob)
        os.set_blocking(self._out, False)
        while data:
            self._wait(self._out, write=True)
            try:
                data = data[os.write(self._out, data) :]
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                raise self._fail("crashed") from None

    def _read(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            self._wait(self._in, write=False)
            chunk = os.read(self._in, min(left, 1 << 20))
            if not chunk:
                raise self._fail("crashed")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _receive(self) -> tuple[dict, bytes]:
        try:
            head, blob = wire.check_lengths(self._read(16))
            return wire.parse_header(self._read(head)), self._read(blob)
        except wire.WireError:
            raise self._fail("broke the protocol") from None

    # ---- requests ---------------------------------------------------------------------------

    def start(self, deadline: float) -> list[str]:
        """Send the cells and wait until they ran (by `deadline`, monotonic); errors of cells that raised."""
        self.deadline = deadline
        with TRUSTED_PHASE.released():
            self._send({"op": "run", "cells": self.cells})
            header, _ = self._receive()
        errors = header.get("ready")
        if not (isinstance(errors, list) and all(type(e) is str for e in errors)):
            raise self._fail("broke the protocol")
        return [escape.one_line(e[:300]) for e in errors[:50]]

    def request(self, header: dict, encoder: wire.Encoder | None = None) -> tuple[Any, int | None]:
        """Send one request; the decoded value and the graph id of a tracked call."""
        with TRUSTED_PHASE.released():
            self._send(header, encoder.blob() if encoder else b"")
            answer, blob = self._receive()
        library = answer.get("library", [])
        if not (isinstance(library, list) and all(type(p) is str for p in library)):
            raise self._fail("broke the protocol")
        self.library_hits.update(escape.one_line(p[:200]) for p in library[:20])
        if answer.get("missing") is True:
            raise LookupError("missing")
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            kind = str(error.get("type", ""))
            kind = kind if ERROR_NAME.fullmatch(kind) else "Exception"
            message = escape.one_line(str(error.get("message", ""))[:500])
            raise BUILTIN_ERRORS.get(kind, SandboxError)(f"{kind}: {message}" if message else kind)
        if "value" not in answer:
            raise self._fail("broke the protocol")
        try:
            decoder = wire.Decoder(blob, self._remote, set_grad=False)
            value = decoder.decode(answer.get("value"))
        except wire.WireError:
            raise self._fail("broke the protocol") from None
        graph = answer.get("graph")
        self._last_grad_tensors = decoder.grad_tensors
        return value, graph if type(graph) is int else None

    def _remote(self, body: Any) -> Remote:
        if not (isinstance(body, dict) and type(body.get("handle")) is int):
            raise wire.WireError("bad handle")
        return Remote(self, {"handle": body["handle"]}, f"<object {body['handle']}>", bool(body.get("callable")))  # fmt: skip

    def pretrained(self, kind: str, files: dict[str, torch.Tensor]) -> Any:
        """A Remote for a transformers object the sandbox loads from `save_pretrained` files."""
        enc = wire.Encoder()
        header = {"op": "pretrained", "kind": kind, "files": enc.encode(files)}
        value, _ = self.request(header, enc)
        if not isinstance(value, Remote):
            raise self._fail("broke the protocol")
        return value

    def forbid(self, paths: list[str]) -> None:
        """Watch every later call for these library paths (`watch`); forget earlier hits."""
        self.request({"op": "forbid", "paths": list(paths)})
        self.library_hits.clear()

    def lookup(self, name: str) -> Any:
        """The value of a notebook name, or a Remote for it; LookupError if it is not defined."""
        value, _ = self.request({"op": "get", "target": {"name": name}})
        if isinstance(value, Remote):
            return Remote(self, {"name": name}, name, value._callable)
        return value

    def call(self, remote: Remote, args: tuple, kwargs: dict) -> Any:
        """Call a sandbox object with plain-data arguments."""
        enc = wire.Encoder(_ref_of)
        header = {"op": "call", "target": remote._ref, "args": enc.encode(list(args))}
        header["kwargs"] = enc.encode(dict(kwargs))
        value, graph = self.request(header, enc)
        outputs = self._last_grad_tensors
        needs_grad = [t for t in enc.grad_tensors if t.requires_grad]
        if graph is None or not outputs or not torch.is_grad_enabled():
            return value
        tied = _RemoteGrad.apply(_Graph(self, graph, outputs), *needs_grad)
        swap = {id(o): t for o, t in zip(outputs, tied, strict=True)}
        return _replace(value, swap)

    def vjp(self, graph: int, grads: tuple) -> list[Any]:
        """Gradients of a tracked call's inputs given the gradients of its outputs."""
        enc = wire.Encoder()
        header = {"op": "vjp", "graph": graph, "grads": enc.encode(list(grads))}
        value, _ = self.request(header, enc)
        return value

    def close(self) -> None:
        """Close the pipes, give the sandbox a moment to exit, then kill its whole process tree."""
        with TRUSTED_PHASE.released():
            self._close()

    def _close(self) -> None:
        for fd in (self._in, self._out):
            if fd >= 0:
                os.close(fd)
        self._in = self._out = -1
        if self.gone != "timeout":  # it exits on end of input (or has exited): keep its exit code
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.launch.cleanup()
        self._reader.join(timeout=5)


class Remote:
    """A name or object of the sandbox: it can be called, passed back, or asked for an attribute."""

    def __init__(self, session: Session, ref: dict, label: str, is_callable: bool) -> None:
        self._session, self._ref, self._label, self._callable = session, ref, label, is_callable

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.call(self, args, kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        try:
            value, _ = self._session.request({"op": "get", "target": self._ref, "attr": attr})
        except LookupError:
            raise AttributeError(f"{self._label} has no attribute {attr!r}") from None
        if isinstance(value, Remote):
            value._label = f"{self._label}.{attr}"
        return value

    def __bool__(self) -> bool:
        raise TypeError(f"{self._label} is an object of the submission, not plain data")

    def __repr__(self) -> str:
        return f"<submission's {self._label}>"


def in_submission(like: Any, obj: Any) -> Any:
    """A transformers model or tokenizer `obj` where the submission's `like` runs: `obj` itself in
    a notebook kernel; in the grader, a copy loaded in `like`'s sandbox from `obj`'s files."""
    if not isinstance(like, Remote):
        return obj
    import tempfile
    from pathlib import Path

    from transformers import PreTrainedTokenizerBase

    kind = "tokenizer" if isinstance(obj, PreTrainedTokenizerBase) else "masked_lm"
    with tempfile.TemporaryDirectory() as tmp:
        obj.save_pretrained(tmp)
        files = {p.name: bytearray(p.read_bytes()) for p in Path(tmp).iterdir() if p.is_file()}
    files = {n: torch.frombuffer(b, dtype=torch.uint8) if b else torch.zeros(0, dtype=torch.uint8) for n, b in files.items()}  # fmt: skip
    return like._session.pretrained(kind, files)


def _ref_of(value: Any) -> dict:
    """The wire reference of a Remote passed as an argument; nothing else may be sent."""
    if not isinstance(value, Remote):
        raise TypeError(f"only plain data can be sent to a submission, not {type(value).__name__}")
    return value._ref


@dataclass
class _Graph:
    """A call the sandbox keeps the autograd graph of."""

    session: Session
    graph: int
    outputs: list[Any]


class _RemoteGrad(torch.autograd.Function):
    """Outputs of a sandbox call tied to its inputs here; backward asks the sandbox for the VJP."""

    @staticmethod
    def forward(ctx: Any, link: _Graph, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.link = link
        return tuple(o.clone() for o in link.outputs)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[Any, ...]:
        grads = ctx.link.session.vjp(ctx.link.graph, grad_outputs)
        return (None, *grads)


def _replace(value: Any, swap: dict[int, Any]) -> Any:
    """`value` with the tensors whose id is in `swap` replaced."""
    if id(value) in swap:
        return swap[id(value)]
    if type(value) in (list, tuple):
        return type(value)(_replace(v, swap) for v in value)
    if type(value) is dict:
        return {k: _replace(v, swap) for k, v in value.items()}
    return value
