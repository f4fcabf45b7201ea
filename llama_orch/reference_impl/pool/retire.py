"""Adapters and engines a reload replaced, closed once the tasks still on them have ended.

After a reload switches a pool to the new model, in-flight streams finish on the adapter (and
engine process) they started on; each replaced pair is closed when its engine reports every
slot free, when the engine no longer answers, or after `RETIRE_BOUND_S` at the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from llama_orch.reference_impl.pool.supervisor import EngineProcess

RETIRE_BOUND_S = 600.0  # longest an old adapter is kept for in-flight tasks after a reload
POLL_S = 0.1


class Retirements:
    """The replaced adapters still waiting to be closed."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def retire(self, replaced: list[tuple[Any, EngineProcess | None]]) -> None:
        """Close each (adapter, process) once idle, in the background."""
        loop = asyncio.get_running_loop()
        for adapter, process in replaced:
            task = loop.create_task(close_when_idle(adapter, process))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop waiting: close every replaced adapter and stop its engine now."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def close_when_idle(
    adapter: Any, process: EngineProcess | None, bound_s: float = RETIRE_BOUND_S
) -> None:
    """Wait until the adapter's engine is idle (or gone, or `bound_s` passed), then close."""
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound_s
        while adapter is not None and loop.time() < deadline:
            try:
                props = await adapter.props()
            except Exception:
                break  # the engine is gone: nothing left to wait for
            if props.slots_free >= props.slots_total:
                break
            await asyncio.sleep(POLL_S)
    finally:
        if adapter is not None:
            with contextlib.suppress(Exception):
                await adapter.close()
        if process is not None:
            await process.stop()
