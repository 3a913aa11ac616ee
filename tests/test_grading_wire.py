"""The plain-data wire format between the grader and a sandbox: round trips and rejections."""

from __future__ import annotations

import json
import math
import os
import struct

import numpy as np
import pytest
import torch

from course_utils.grading import wire


def _round_trip(value: object, *, make_ref=None, resolve=None) -> object:
    enc = wire.Encoder(make_ref)
    tagged = json.loads(json.dumps(enc.encode(value)))
    return wire.Decoder(enc.blob(), resolve or (lambda r: ("ref", r)), set_grad=False).decode(
        tagged
    )


def test_plain_values_round_trip_exactly() -> None:
    g = torch.Generator().manual_seed(3)
    value = {
        "n": [1, -(2**62), 2.5, float("inf"), None, True, "é"],
        (1, "k"): (torch.arange(6, dtype=torch.int16).reshape(2, 3), np.eye(2, dtype=np.float32)),
        "bf16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        "scalar": np.float64(0.25),
        "dtype": torch.float64,
        "empty": torch.zeros(0, 3),
    }
    back = _round_trip({**value, "gen": g})
    assert back["n"][:3] == value["n"][:3] and math.isinf(back["n"][3]) and back["n"][4:] == value["n"][4:]  # fmt: skip
    t, a = back[(1, "k")]
    assert torch.equal(t, value[(1, "k")][0]) and t.dtype == torch.int16
    assert np.array_equal(a, value[(1, "k")][1]) and a.dtype == np.float32
    assert torch.equal(back["bf16"], value["bf16"]) and back["bf16"].dtype == torch.bfloat16
    assert type(back["scalar"]) is np.float64 and back["scalar"] == 0.25
    assert back["dtype"] is torch.float64 and back["empty"].shape == (0, 3)
    assert torch.equal(torch.rand(4, generator=back["gen"]), torch.rand(4, generator=g))


def test_subclasses_are_not_plain_data() -> None:
    class Always(float):
        def __eq__(self, other: object) -> bool:
            return True

    class Magic(torch.Tensor):
        pass

    for rigged in (Always(1.0), torch.zeros(2).as_subclass(Magic), object()):
        with pytest.raises(wire.WireError, match="not plain data|not supported"):
            wire.Encoder().encode(rigged)
        assert _round_trip(rigged, make_ref=lambda v: {"handle": 0}) == ("ref", {"handle": 0})


@pytest.mark.parametrize(
    "tagged",
    [
        {"tensor": {"dtype": "float32", "shape": [3], "at": [0, 8]}},  # 2 floats for 3
        {"tensor": {"dtype": "object", "shape": [1], "at": [0, 8]}},
        {"ndarray": {"dtype": "float64", "shape": [1], "at": [8, 8]}},  # outside the blob
        {"tensor": {"dtype": "float32", "shape": [1] * 9, "at": [0, 4]}},
        {"pickle": "gASV"},
        {"list": [1], "tuple": [2]},
    ],
)
def test_malformed_values_are_rejected(tagged: dict) -> None:
    with pytest.raises(wire.WireError):
        wire.Decoder(bytes(8), lambda r: r, set_grad=False).decode(tagged)


def test_frames_round_trip_and_oversized_ones_are_refused() -> None:
    r, w = os.pipe()
    wire.write_frame(w, {"op": "get"}, b"abc")
    assert wire.read_frame(r) == ({"op": "get"}, b"abc")
    os.write(w, struct.pack(">QQ", wire.MAX_HEADER_BYTES + 1, 0))
    with pytest.raises(wire.WireError, match="caps"):
        wire.read_frame(r)
    os.close(w)
    with pytest.raises(EOFError):
        wire.read_frame(r)
    os.close(r)
    with pytest.raises(wire.WireError):
        wire.parse_header(b"[1, 2]")
