"""Telling a GPU out-of-memory failure from a host one by the engine's words (ORCH-3039).

Engines report the two differently: CUDA's allocator says `CUDA error: out of memory` or
`cudaMalloc failed`, PyTorch-based engines (vLLM, TGI) `CUDA out of memory. Tried to
allocate ...`, ROCm `hipMalloc` / `HIP out of memory`; host allocation failures surface as the
C++ `std::bad_alloc`, `failed to allocate host buffer`, llama.cpp's CPU buffer allocator, or
the OS's `Cannot allocate memory` (ENOMEM). Anything else is not an OOM.
"""

from __future__ import annotations

import re

from llama_orch.reference_impl.adapters.base import OomKind

_DEVICE = re.compile(
    r"cuda(?: error)?:? out of memory|cudaMalloc|cuda_malloc|hipMalloc|hip out of memory"
    r"|out of memory on device|ggml_backend_cuda_buffer|vram",
    re.IGNORECASE,
)
_HOST = re.compile(
    r"bad_alloc|host buffer|host memory|cannot allocate memory|ggml_backend_cpu_buffer"
    r"|memoryerror",
    re.IGNORECASE,
)


def classify_oom(message: str) -> OomKind | None:
    """`device`, `host` or None for an engine's failure message."""
    if _DEVICE.search(message):
        return "device"
    if _HOST.search(message):
        return "host"
    return None
