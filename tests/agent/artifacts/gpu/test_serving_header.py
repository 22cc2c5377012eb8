"""The canonical safetensors layout that serving measurements hash (no GPU needed)."""

from __future__ import annotations

import json
import struct
import types

import pytest

from attestd.agent.artifacts.gpu import GpuInputError, canonical_header


def _tensor(dtype: str, shape: tuple[int, ...], itemsize: int) -> object:
    count = 1
    for n in shape:
        count *= n
    return types.SimpleNamespace(dtype=dtype, shape=shape, nbytes=count * itemsize)


def test_header_is_a_padded_sorted_safetensors_header() -> None:
    tensors = {
        "z.weight": _tensor("torch.bfloat16", (4, 3), 2),
        "a.bias": _tensor("float32", (3,), 4),
    }
    raw = canonical_header(tensors)
    (length,) = struct.unpack("<Q", raw[:8])
    assert len(raw) == 8 + length and length % 8 == 0
    header = json.loads(raw[8:])
    assert list(header) == ["a.bias", "z.weight"]
    assert header["a.bias"] == {"data_offsets": [0, 12], "dtype": "F32", "shape": [3]}
    assert header["z.weight"] == {"data_offsets": [12, 36], "dtype": "BF16", "shape": [4, 3]}


def test_unknown_dtypes_are_refused() -> None:
    with pytest.raises(GpuInputError, match="complex64"):
        canonical_header({"x": _tensor("complex64", (2,), 8)})
