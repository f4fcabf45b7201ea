"""Which adapter backs a replica: the in-process mock, or (engine layer) a real engine client."""

from __future__ import annotations

from typing import Any

from reference_impl.config import PoolConfig

UNLOADABLE_PREFIX = "repo:mock/unloadable"


def make_adapter(pool: PoolConfig, replica_id: str, model_ref: str) -> Any:
    """Build the adapter for one replica of `pool` serving `model_ref`.

    The mock engine treats model refs starting with `repo:mock/unloadable` as models whose
    load fails, so reload rollback can be exercised without a real engine.
    """
    adapter = pool.adapter.value if pool.adapter is not None else pool.engine.value
    if adapter == "mock":
        from reference_impl.adapters.mock import MockAdapter

        return MockAdapter(
            pool.engine.value,
            replica_id,
            model_ref=model_ref,
            ctx_max=pool.ctx or 4096,
            slots=1 if pool.determinism else 4,
            preload_fail=(
                f"cannot load {model_ref}: no such model"
                if model_ref.startswith(UNLOADABLE_PREFIX)
                else None
            ),
        )
    raise LookupError(f"the {adapter} adapter is not available in this build (engine layer)")
