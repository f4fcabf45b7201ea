"""What the service hands a replica's adapter and what it may get back, from the adapter
contract (adapters/base.py), re-exported so service/ reaches engines through pool/ only."""

from llama_orch.reference_impl.adapters.base import (
    AdapterError,
    CompletionRequest,
    Interruptible,
    ResumeState,
    SamplerParams,
)

__all__ = ["AdapterError", "CompletionRequest", "Interruptible", "ResumeState", "SamplerParams"]
