"""Plain data over a pipe between the trusted grader and a submission's sandbox.

A message is one frame: two 8-byte big-endian lengths, a JSON header and a blob of raw array bytes.
Values are JSON scalars (None, bool, int, float, str) or tagged JSON objects: lists, tuples, dicts
(as key/value pairs), torch tensors, numpy arrays and scalars (dtype, shape and a slice of the blob),
torch dtypes, CPU torch generators (their state) and `ref`s (a handle to an object that stays in the
sandbox). Only these exact types are written: a subclass (a float with a rigged `__eq__`, a Tensor
with `__torch_function__`) is not plain data and stays behind a `ref`. Reading checks every tag,
dtype, shape and length against the caps below and builds fresh objects: nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
from collections.abc import Callable
from typing import Any

MAX_HEADER_BYTES = 16 * 2**20
MAX_BLOB_BYTES = 256 * 2**20
MAX_DEPTH = 64
MAX_NDIM = 8
DTYPES = (
    "bool", "uint8", "int8", "int16", "int32", "int64",
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
)  # fmt: skip
_LENGTHS = struct.Struct(">QQ")


class WireError(ValueError):
    """A frame or value that breaks the protocol (malformed, over a cap, unknown tag)."""


# ---- frames -----------------------------------------------------------------------------------


def write_frame(fd: int, header: dict, blob: bytes = b"") -> None:
    """Write one message to the file descriptor `fd` (blocking)."""
    head = json.dumps(header, separators=(",", ":")).encode()
    data = memoryview(_LENGTHS.pack(len(head), len(blob)) + head + blob)
    while data:
        data = data[os.write(fd, data) :]


def check_lengths(prefix: bytes) -> tuple[int, int]:
    """The header and blob lengths announced by a frame's 16-byte prefix, checked against the caps."""
    head, blob = _LENGTHS.unpack(prefix)
    if head > MAX_HEADER_BYTES or blob > MAX_BLOB_BYTES:
        raise WireError(f"frame of {head} + {blob} bytes is over the caps")
    return head, blob


def parse_header(raw: bytes) -> dict:
    """The JSON header of a frame, which must be an object."""
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise WireError(f"header is not JSON: {type(e).__name__}") from None
    if not isinstance(header, dict):
        raise WireError("header must be a JSON object")
    return header


def read_exact(fd: int, n: int) -> bytes:
    """Exactly `n` bytes from `fd` (blocking); EOFError if the other side closed first."""
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> tuple[dict, bytes]:
    """One message from `fd` (blocking)."""
    head, blob = check_lengths(read_exact(fd, _LENGTHS.size))
    return parse_header(read_exact(fd, head)), read_exact(fd, blob)


# ---- values -----------------------------------------------------------------------------------


class Encoder:
    """Turns a value into tagged JSON plus blob chunks; non-plain objects go through `make_ref`."""

    def __init__(self, make_ref: Callable[[Any], Any] | None = None) -> None:
        self.make_ref = make_ref
        self.chunks: list[bytes] = []
        self.size = 0
        self.grad_tensors: list[Any] = []  # tensors that require grad, in the order written

    def blob(self) -> bytes:
        """The concatenated array bytes of everything encoded so far."""
        return b"".join(self.chunks)

    def _add(self, data: bytes) -> list[int]:
        self.size += len(data)
        if self.size > MAX_BLOB_BYTES:
            raise WireError(f"arrays of more than {MAX_BLOB_BYTES} bytes in one message")
        self.chunks.append(data)
        return [self.size - len(data), len(data)]

    def encode(self, value: Any, depth: int = 0) -> Any:
        """The wire form of `value`."""
        if depth > MAX_DEPTH:
            raise WireError(f"value nested deeper than {MAX_DEPTH}")
        kind = type(value)
        if value is None or kind is bool or kind is str:
            return value
        if kind is int:
            if abs(value) >= 2**63:
                raise WireError("integer outside the 64-bit range")
            return value
        if kind is float:
            return value if math.isfinite(value) else {"float": repr(value)}
        if kind is list or kind is tuple:
            return {kind.__name__: [self.encode(v, depth + 1) for v in value]}
        if kind is dict or _is_exact(value, "collections", "OrderedDict"):
            return {"dict": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]}  # fmt: skip
        torch, np = sys.modules.get("torch"), sys.modules.get("numpy")
        if torch is not None and kind in (torch.Tensor, torch.nn.Parameter):
            return self._tensor(torch, value)
        if torch is not None and kind is torch.dtype:
            return {"torch_dtype": str(value).removeprefix("torch.")}
        if torch is not None and kind is torch.Generator and value.device.type == "cpu":
            return {"generator": self._add(value.get_state().numpy().tobytes())}
        if np is not None and kind is np.ndarray and value.dtype.name in DTYPES:
            data = np.ascontiguousarray(value).tobytes()
            return {"ndarray": {"dtype": value.dtype.name, "shape": list(value.shape), "at": self._add(data)}}  # fmt: skip
        if np is not None and isinstance(value, np.generic) and kind.__module__ == "numpy":
            if value.dtype.name in DTYPES:
                return {"npscalar": {"dtype": value.dtype.name, "at": self._add(value.tobytes())}}
        if self.make_ref is None:
            raise WireError(f"{kind.__name__} is not plain data")
        return {"ref": self.make_ref(value)}

    def _tensor(self, torch: Any, t: Any) -> dict:
        name = str(t.dtype).removeprefix("torch.")
        if name not in DTYPES or t.layout != torch.strided or t.is_quantized:
            if self.make_ref is None:
                raise WireError(f"tensors of dtype {name} are not supported")
            return {"ref": self.make_ref(t)}
        flat = t.detach().to("cpu").contiguous()
        raw = flat.view(torch.int16) if name == "bfloat16" else flat
        out = {"dtype": name, "shape": list(t.shape), "at": self._add(raw.numpy().tobytes())}
        if t.requires_grad:
            out["grad"] = len(self.grad_tensors)
            self.grad_tensors.append(t)
        return {"tensor": out}


class Decoder:
    """Builds values from tagged JSON and a blob, checking every field; refs go to `resolve_ref`."""

    def __init__(self, blob: bytes, resolve_ref: Callable[[Any], Any], *, set_grad: bool) -> None:
        self.blob = blob
        self.resolve_ref = resolve_ref
        self.set_grad = set_grad  # make tensors marked "grad" require grad (else only list them)
        self.grad_tensors: list[Any] = []  # tensors marked "grad", in the order read

    def _bytes(self, at: Any) -> bytes:
        if not (isinstance(at, list) and len(at) == 2 and all(type(x) is int for x in at)):
            raise WireError("array location must be [offset, length]")
        start, length = at
        if start < 0 or length < 0 or start + length > len(self.blob):
            raise WireError("array location outside the message")
        return self.blob[start : start + length]

    @staticmethod
    def _shape(shape: Any) -> list[int]:
        ok = isinstance(shape, list) and len(shape) <= MAX_NDIM
        if not ok or not all(type(s) is int and 0 <= s < 2**40 for s in shape):
            raise WireError(f"bad array shape {str(shape)[:80]}")
        return shape

    @staticmethod
    def _dtype(name: Any) -> str:
        if name not in DTYPES:
            raise WireError(f"unsupported dtype {str(name)[:40]}")
        return name

    def decode(self, value: Any, depth: int = 0) -> Any:
        """The value that `value` (tagged JSON) stands for."""
        if depth > MAX_DEPTH:
            raise WireError(f"value nested deeper than {MAX_DEPTH}")
        if value is None or type(value) in (bool, int, float, str):
            return value
        if not (isinstance(value, dict) and len(value) == 1):
            raise WireError(f"unknown value {str(value)[:80]}")
        ((tag, body),) = value.items()
        if tag in ("list", "tuple") and isinstance(body, list):
            items = [self.decode(v, depth + 1) for v in body]
            return items if tag == "list" else tuple(items)
        if tag == "dict" and isinstance(body, list):
            if not all(isinstance(p, list) and len(p) == 2 for p in body):
                raise WireError("dict must be a list of [key, value] pairs")
            out = {}
            for k, v in body:
                key = self.decode(k, depth + 1)
                try:
                    out[key] = self.decode(v, depth + 1)
                except TypeError:
                    raise WireError("unhashable dict key") from None
            return out
        if tag == "float" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "ref":
            return self.resolve_ref(body)
        if tag == "tensor" and isinstance(body, dict):
            return self._tensor(body)
        if tag == "ndarray" and isinstance(body, dict):
            import numpy as np

            dtype, shape = np.dtype(self._dtype(body.get("dtype"))), self._shape(body.get("shape"))
            data = self._bytes(body.get("at"))
            if len(data) != math.prod(shape) * dtype.itemsize:
                raise WireError("array length does not match its dtype and shape")
            return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        if tag == "npscalar" and isinstance(body, dict):
            import numpy as np

            dtype, data = np.dtype(self._dtype(body.get("dtype"))), self._bytes(body.get("at"))
            if len(data) != dtype.itemsize:
                raise WireError("scalar length does not match its dtype")
            return np.frombuffer(data, dtype=dtype)[0].copy()
        if tag == "torch_dtype":
            import torch

            return getattr(torch, self._dtype(body))
        if tag == "generator":
            import torch

            state = torch.frombuffer(bytearray(self._bytes(body)), dtype=torch.uint8)
            g = torch.Generator()
            try:
                g.set_state(state.clone())
            except RuntimeError:
                raise WireError("not a generator state") from None
            return g
        raise WireError(f"unknown tag {tag[:40]!r}")

    def _tensor(self, body: dict) -> Any:
        import torch

        name, shape = self._dtype(body.get("dtype")), self._shape(body.get("shape"))
        dtype = getattr(torch, name)
        data = self._bytes(body.get("at"))
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise WireError("tensor length does not match its dtype and shape")
        raw_dtype = torch.int16 if name == "bfloat16" else dtype
        t = torch.frombuffer(bytearray(data), dtype=raw_dtype) if data else torch.empty(0, dtype=raw_dtype)  # fmt: skip
        t = (t.view(dtype) if name == "bfloat16" else t).reshape(shape)
        if "grad" in body:
            if not t.is_floating_point():
                raise WireError("only floating tensors can require grad")
            t.requires_grad_(self.set_grad)
            self.grad_tensors.append(t)
        return t


def _is_exact(value: Any, module: str, name: str) -> bool:
    """Whether `value`'s type is exactly `module.name`."""
    kind = type(value)
    return kind.__module__ == module and kind.__qualname__ == name
