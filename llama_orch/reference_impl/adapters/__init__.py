"""Engine adapters: one small async protocol (base) and its implementations (mock, ...)."""

from .base import (
    ADAPTER_ERROR_CODES,
    FINISH_CANCELED,
    FINISH_LENGTH,
    FINISH_STOP,
    AdapterError,
    AdapterErrorCode,
    AdapterHealth,
    AdapterProps,
    CompletionRequest,
    EngineAdapter,
    LoadSignals,
    SamplerParams,
    StreamEnd,
    TokenAlt,
    TokenEvent,
    TokenStream,
)
from .mock import MockAdapter

__all__ = [
    "ADAPTER_ERROR_CODES",
    "FINISH_CANCELED",
    "FINISH_LENGTH",
    "FINISH_STOP",
    "AdapterError",
    "AdapterErrorCode",
    "AdapterHealth",
    "AdapterProps",
    "CompletionRequest",
    "EngineAdapter",
    "LoadSignals",
    "MockAdapter",
    "SamplerParams",
    "StreamEnd",
    "TokenAlt",
    "TokenEvent",
    "TokenStream",
]
