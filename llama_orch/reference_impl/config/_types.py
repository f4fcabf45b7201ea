"""Enums, constrained scalar types and the cross-field error helper shared by the config models.

The scheduling enums (`Priority`, `FullPolicy`, `PreemptionMode`) are the core's own
(`core.types`): one definition each in the reference; config depends on core, never the reverse.

Scalars are strict (no `"8192"` → 8192, no `"yes"` → True): a config is written by hand, and a
quoted number or a stray string is more likely a mistake than an intent.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, Strict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1

# Every model forbids unknown keys; the loader relaxes this in compat mode by dropping them.
FORBID = ConfigDict(extra="forbid")


class ValidationMode(StrEnum):
    """How unknown keys are treated: `strict` rejects them, `compat` logs and ignores them."""

    STRICT = "strict"
    COMPAT = "compat"


class Engine(StrEnum):
    """Inference engine family a pool runs."""

    LLAMACPP = "llamacpp"
    VLLM = "vllm"
    TGI = "tgi"
    TRITON = "triton"


class AdapterKind(StrEnum):
    """Adapter that backs a pool: the engine's own, or the in-process mock."""

    MOCK = "mock"
    LLAMACPP = "llamacpp"
    VLLM = "vllm"
    TGI = "tgi"
    TRITON = "triton"


class FairnessKind(StrEnum):
    """Fair-queuing algorithm used to share admission between priorities and tenants."""

    WFQ = "wfq"


class EngineCapability(StrEnum):
    """Engine capability that hard preemption depends on."""

    INTERRUPTIBLE_DECODE = "interruptible_decode"


class TrustMode(StrEnum):
    """Catalog trust policy: `strict` enforces signatures/SBOM, `permissive` only warns."""

    STRICT = "strict"
    PERMISSIVE = "permissive"


StrictBool = Annotated[bool, Strict()]
StrictStr = Annotated[str, Strict()]
# Strict floats still accept YAML integers (`temperature: 0`), which is what people write.
StrictFloat = Annotated[float, Strict()]
U32 = Annotated[int, Strict(), Field(ge=0, le=UINT32_MAX)]
PositiveU32 = Annotated[int, Strict(), Field(ge=1, le=UINT32_MAX)]
PositiveU64 = Annotated[int, Strict(), Field(ge=1, le=UINT64_MAX)]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]

SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
SHA256_HEX_PATTERN = r"^[0-9a-f]{64}$"
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
MODEL_REF_PATTERN = rf"^(sha256:[0-9a-f]{{64}}|repo:{_NAME}/{_NAME})$"
URL_PATTERN = r"^https?://[^\s/?#]+(/\S*)?$"

# What each pattern means, for error messages a person can read.
PATTERN_HINTS = {
    SAFE_ID_PATTERN: "an id of letters, digits, '.', '_' or '-' (at most 64, alphanumeric first)",
    ENV_VAR_PATTERN: "an environment variable name",
    SHA256_HEX_PATTERN: "64 lower-case hex digits",
    MODEL_REF_PATTERN: "a model reference 'sha256:<64 hex>' or 'repo:<org>/<name>'",
    URL_PATTERN: "an http(s) URL such as http://127.0.0.1:8081",
}

SafeId = Annotated[str, Strict(), Field(pattern=SAFE_ID_PATTERN)]
EnvVarName = Annotated[str, Strict(), Field(pattern=ENV_VAR_PATTERN)]


def rule_error(model: str, issues: list[tuple[tuple[str | int, ...], str, Any]]) -> ValidationError:
    """Build a ValidationError for cross-field rules, each issue at its own key path.

    A plain ValueError from a model validator would point at the whole model; raising a
    ValidationError instead lets `pools[0].tensor_split` be named exactly.
    """
    details = [
        InitErrorDetails(
            type=PydanticCustomError("config_rule", "{detail}", {"detail": message}),
            loc=loc,
            input=value,
        )
        for loc, message, value in issues
    ]
    return ValidationError.from_exception_data(model, details)


def duplicates(
    field: str, values: list[str], what: str, key: str = "id"
) -> list[tuple[tuple[str | int, ...], str, object]]:
    """One issue per repeated value, pointing at the repeat and naming the first occurrence."""
    first: dict[str, int] = {}
    issues: list[tuple[tuple[str | int, ...], str, object]] = []
    for i, value in enumerate(values):
        if value in first:
            msg = f"duplicate {what} {value!r} (first defined at {field}[{first[value]}])"
            issues.append(((field, i, key), msg, value))
        else:
            first[value] = i
    return issues
