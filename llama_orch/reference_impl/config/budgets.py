"""Per-session budgets and the artifact store: two small extended-profile config sections."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from llama_orch.reference_impl.config._types import FORBID, PositiveU32, PositiveU64, StrictFloat

PositiveFloat = Annotated[StrictFloat, Field(gt=0.0)]


class SessionBudgetsConfig(BaseModel):
    """What one session may use up (OC-CORE-1023); a budget left out is not enforced."""

    model_config = FORBID

    tokens: PositiveU64 | None = Field(
        default=None, description="Tokens per session: prompt plus generated, over all its tasks."
    )
    time_ms: PositiveU64 | None = Field(
        default=None, description="Decode wall time per session, in ms (dispatch to end)."
    )
    cost: PositiveFloat | None = Field(
        default=None, description="Cost units per session; see cost_per_1k_tokens."
    )
    cost_per_1k_tokens: PositiveFloat = Field(
        default=1.0, description="Cost units charged for every thousand tokens a task uses."
    )


class ArtifactsConfig(BaseModel):
    """The artifact store (`POST /v1/artifacts`, ORCH-3097): content-addressed, in memory."""

    model_config = FORBID

    enabled: bool = Field(default=True, description="Serve the artifact operations.")
    max_bytes: PositiveU64 = Field(
        default=64 * 1024 * 1024,
        description="Stored content kept at most, in bytes; the oldest artifacts go first.",
    )
    max_count: PositiveU32 = Field(
        default=10_000, description="Artifacts kept at most; the oldest go first."
    )
