"""BLAKE3 of model bytes in GPU memory, equal to the ``blake3`` package's digest.

    from attestd.agent.artifacts.gpu import cuda, measure_loaded_tensors

    cuda.blake3(tensor).hex()                      # a CUDA tensor or array, in place
    cuda.blake3_pieces([(header, 0, len(header)), (tensor, 0, -1)])   # one message
    cuda.blake3_file("/srv/models/model.safetensors")                 # host file via the GPU
    measure_loaded_tensors(model.state_dict(), agent=agent, name="llama")  # + runtime log

``reference`` is the same tree schedule in pure Python (the CPU reference the
tests compare with ``blake3``); ``blake3.cu`` is the kernel source. Without
CuPy, a CUDA device or a working driver every GPU call raises
:class:`GpuUnavailableError`, never hashing on the CPU instead. See
docs/gpu-hashing.md for what such a digest proves.
"""

from attestd.agent.artifacts.gpu import cuda, reference
from attestd.agent.artifacts.gpu.errors import GpuError, GpuInputError, GpuUnavailableError
from attestd.agent.artifacts.gpu.serving import canonical_header, measure_loaded_tensors

__all__ = [
    "GpuError",
    "GpuInputError",
    "GpuUnavailableError",
    "canonical_header",
    "cuda",
    "measure_loaded_tensors",
    "reference",
]
