"""Which start-up self-test result the pool health shows (ORCH-3049).

Two results are kept per pool: the one of the generation that serves (its adapters passed it
when they were installed) and the latest attempt (a start, restart, reload or endpoint
recovery). They differ after a failed reload while the old model keeps serving: health then
shows the serving model's result as `self_test` and the failed one as
`self_test_last_attempt`, so `self_test` never describes a model that is not serving.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_orch.reference_impl.pool.selftest import (
    SelfTestLimits,
    SelfTestResult,
    Status,
    pool_summary,
    self_test_replicas,
)
from llama_orch.reference_impl.pool.state import PoolState

Results = tuple[SelfTestResult, ...]


@dataclass
class SelfTestBook:
    """Runs self-tests with the manager's limits and remembers their results per pool."""

    limits: SelfTestLimits = field(default_factory=SelfTestLimits)
    _serving: dict[str, Results] = field(default_factory=dict)
    _attempt: dict[str, Results] = field(default_factory=dict)

    async def run(self, pool: PoolState, adapters: Sequence[Any], *, shared: bool) -> Results:
        """Self-test `adapters` (one `self_test` log event each) and record the attempt."""
        results = await self_test_replicas(
            pool.pool_id, pool.engine, adapters, self.limits, shared=shared
        )
        self._attempt[pool.pool_id] = results
        return results

    def installed(self, pool_id: str) -> None:
        """The adapters of the latest attempt now serve."""
        if pool_id in self._attempt:
            self._serving[pool_id] = self._attempt[pool_id]

    def summaries(self, pool: PoolState) -> tuple[dict[str, Status] | None, dict | None]:
        """(self_test, last_attempt): the serving generation's result while a replica serves,
        else the latest attempt's; `last_attempt` only when it is a different, later result."""
        attempt = self._attempt.get(pool.pool_id)
        serving = self._serving.get(pool.pool_id)
        if serving is None or not any(h.ready for h in pool.replicas):
            return _summary(attempt), None
        return _summary(serving), (_summary(attempt) if attempt is not serving else None)


def _summary(results: Results | None) -> dict[str, Status] | None:
    return dict(pool_summary(results)) if results else None
