"""Measuring a model's tensors where they live: in a serving process, on the GPU.

    from attestd.agent.artifacts.gpu.serving import measure_loaded_tensors
    from attestd.client import AgentClient

    model = load_model(...)                        # weights now in GPU memory
    with AgentClient.unix("/run/attestd/attestd.sock") as agent:
        digest = measure_loaded_tensors(model.state_dict(), agent=agent, name="llama-3-8b")

The digest is BLAKE3 of the *canonical safetensors file* of the tensors: the
8-byte little-endian header length, the header (see :func:`canonical_header`),
then every tensor's bytes, names in sorted order. That is a valid safetensors
file, so ``b3sum`` of a file written that way (e.g. by
:func:`canonical_header` plus the tensors' bytes) gives the same digest; it is
*not* in general the digest of the file the model was loaded from, whose
header order and metadata are the publisher's.

With ``agent``, the digest is recorded in the agent's runtime log as the event
``serving.model`` / ``loaded-tensors-measured`` with JSON content
``{"algorithm", "digest", "name", "serialization", "sizeBytes", "tensorCount"}``.
Without a GPU this raises :class:`GpuUnavailableError` and records nothing.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from attestd.agent.artifacts.gpu import cuda
from attestd.agent.artifacts.gpu.errors import GpuInputError
from attestd.evidence import canonical_json

if TYPE_CHECKING:
    from attestd.client import AgentClient

DOMAIN: Final = "serving.model"
OPERATION: Final = "loaded-tensors-measured"
SERIALIZATION: Final = "safetensors-canonical-v1"

#: safetensors' dtype names, by torch / NumPy / CuPy dtype name.
DTYPES: Final[dict[str, str]] = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
}


def measure_loaded_tensors(
    tensors: Mapping[str, Any], *, agent: AgentClient | None, name: str
) -> str:
    """BLAKE3 (hex) of the tensors' canonical safetensors file; logged through ``agent``.

    Every tensor must be C-contiguous and on the current CUDA device (or in
    host memory); the call reads them in place, without copies.

    Raises:
        GpuUnavailableError: no CuPy, CUDA device or driver (nothing is recorded).
        GpuInputError: a tensor is strided, on another device, or of an unknown dtype.
        AgentCallError: the agent refused the event.
    """
    header = canonical_header(tensors)
    pieces: list[cuda.Piece] = [(header, 0, len(header))]
    pieces.extend((tensors[key], 0, -1) for key in sorted(tensors))
    digest = cuda.blake3_pieces(pieces).hex()
    if agent is not None:
        size = len(header) + sum(_nbytes(t) for t in tensors.values())
        content = canonical_json(
            {
                "name": name,
                "algorithm": "blake3",
                "digest": digest,
                "serialization": SERIALIZATION,
                "tensorCount": len(tensors),
                "sizeBytes": size,
            }
        )
        agent.record(DOMAIN, OPERATION, content)
    return digest


def canonical_header(tensors: Mapping[str, Any]) -> bytes:
    """The length prefix and JSON header of the canonical safetensors file.

    Keys sorted, no spaces, no ``__metadata__``; offsets in sorted-name order;
    padded with spaces to a multiple of 8 bytes, as safetensors pads.
    """
    entries: dict[str, object] = {}
    offset = 0
    for key in sorted(tensors):
        tensor = tensors[key]
        size = _nbytes(tensor)
        entries[key] = {
            "dtype": _dtype(key, tensor),
            "shape": [int(n) for n in tensor.shape],
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    raw = text.encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _dtype(key: str, tensor: Any) -> str:
    name = str(tensor.dtype).removeprefix("torch.")
    found = DTYPES.get(name)
    if found is None:
        raise GpuInputError(f"tensor {key!r} has dtype {name}, which safetensors cannot name")
    return found


def _nbytes(tensor: Any) -> int:
    if hasattr(tensor, "element_size"):
        return int(tensor.numel() * tensor.element_size())
    return int(tensor.nbytes)
