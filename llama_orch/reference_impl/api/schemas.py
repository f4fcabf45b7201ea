"""Request bodies of OrchQueue v1, mirroring contracts/openapi/*.yaml (unknown fields refused).

`Engine` and `Priority` are the reference's own enums (service.types), not copies; the enums
only the HTTP request knows (workload, determinism level, KV hint) live here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from llama_orch.reference_impl.service.types import Engine, Priority

_STRICT = ConfigDict(extra="forbid", strict=True)
Int32 = Annotated[StrictInt, Field(ge=-(2**31), le=2**31 - 1)]
Int64 = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]


class Workload(StrEnum):
    COMPLETION = "completion"
    EMBEDDING = "embedding"
    RERANK = "rerank"


class DeterminismLevel(StrEnum):
    STRICT = "strict"
    BEST_EFFORT = "best_effort"


class KVHint(StrEnum):
    REUSE = "reuse"
    COLD = "cold"


StopSequence = Annotated[StrictStr, Field(min_length=1, max_length=64)]


class Placement(BaseModel):
    """Where a task may run; today only a pin to one replica (for determinism checks)."""

    model_config = _STRICT

    replica_id: Annotated[StrictStr, Field(min_length=1, max_length=256)]


class TaskRequest(BaseModel):
    """Body of `POST /v1/tasks` (ORCH-2001, ORCH-2008)."""

    model_config = _STRICT

    task_id: UUID
    session_id: UUID
    workload: Workload
    model_ref: Annotated[StrictStr, Field(min_length=1, max_length=512)]
    engine: Engine
    ctx: Annotated[Int32, Field(ge=1)]
    priority: Priority
    max_tokens: Annotated[Int32, Field(ge=1)]
    deadline_ms: Annotated[Int64, Field(ge=0)]
    seed: Int64 | None = None
    determinism: DeterminismLevel | None = None
    sampler_profile_version: StrictStr | None = None
    prompt: StrictStr | None = None
    inputs: list[StrictStr] | None = None
    expected_tokens: Annotated[Int32, Field(ge=0)] | None = None
    kv_hint: KVHint | None = None
    override: StrictBool = False
    stop: Annotated[list[StopSequence], Field(max_length=4)] | None = None
    placement: Placement | None = None


class DrainRequest(BaseModel):
    model_config = _STRICT
    deadline_ms: Annotated[Int64, Field(ge=0)]


class ReloadRequest(BaseModel):
    model_config = _STRICT
    new_model_ref: Annotated[StrictStr, Field(min_length=1, max_length=512)]


# -- catalog and artifacts (control.yaml, extended profile) ------------------------------------
# These objects are open in the contract: unknown fields (a client's `trust_policy`, the
# read-only `state`, `id` or `created_ms`) are accepted and ignored, never applied.
_OPEN = ConfigDict(extra="ignore", strict=True)
Text = Annotated[StrictStr, Field(max_length=1 << 19)]
Name = Annotated[StrictStr, Field(min_length=1, max_length=256)]


class CatalogDocument(BaseModel):
    """A manifest or the SBOM: its digest, and its text to be stored with the entry."""

    model_config = _OPEN
    digest: Annotated[StrictStr, Field(max_length=80)] = ""
    size_bytes: Annotated[Int64, Field(ge=0)] | None = None
    uri: Annotated[StrictStr, Field(max_length=2048)] | None = None
    content: Text | None = None


class CatalogSignature(BaseModel):
    model_config = _OPEN
    signer: Name
    algo: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    timestamp_ms: Int64 | None = None
    value: Annotated[StrictStr, Field(max_length=4096)] | None = None
    certificate: Annotated[StrictStr, Field(max_length=16384)] | None = None


class CatalogModelRequest(BaseModel):
    """Body of `POST /v1/catalog/models` (ORCH-3060)."""

    model_config = _OPEN
    id: Name
    digest: Annotated[StrictStr, Field(min_length=1, max_length=80)]
    source_url: Annotated[StrictStr, Field(min_length=1, max_length=2048)] | None = None
    tags: Annotated[list[Name], Field(max_length=64)] = []
    manifests: Annotated[list[CatalogDocument], Field(max_length=16)] = []
    signatures: Annotated[list[CatalogSignature], Field(max_length=16)] = []
    sbom: CatalogDocument | None = None
    engine: Engine | None = None


class ModelStateName(StrEnum):
    DRAFT = "Draft"
    ACTIVE = "Active"
    CANARY = "Canary"
    DEPRECATED = "Deprecated"
    RETIRED = "Retired"


class CatalogStateRequest(BaseModel):
    """Body of `POST /v1/catalog/models/{id}/state` (ORCH-3072)."""

    model_config = _STRICT
    state: ModelStateName
    deadline_ms: Annotated[Int64, Field(ge=0)] | None = None


class ArtifactKind(StrEnum):
    PLAN = "plan"
    SUMMARY = "summary"
    DIFF = "diff"
    TRACE = "trace"
    OTHER = "other"


class ArtifactRequest(BaseModel):
    """Body of `POST /v1/artifacts` (ORCH-3097)."""

    model_config = _OPEN
    kind: ArtifactKind
    content: dict[str, Any]
    tags: Annotated[list[Name], Field(max_length=64)] = []
    parent: Name | None = None
    metadata: dict[str, Any] | None = None
